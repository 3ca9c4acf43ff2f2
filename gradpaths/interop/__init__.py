"""Other frameworks' recurrent layers -> gradpaths ``(cell, params)``, exactly.

Each importer lives in its own module and imports its framework only when called, so
``import gradpaths`` needs neither torch nor flax nor the modern-cell packages.
"""

from gradpaths.interop.classic import TORCH_KINDS, from_flax, from_torch, state_from_flax, state_from_torch
from gradpaths.interop.mambapy import from_mambapy
from gradpaths.interop.mingru import from_mingru, state_from_mingru
from gradpaths.interop.recurrentgemma import from_recurrentgemma
from gradpaths.interop.xlstm import from_xlstm

__all__ = [
    "TORCH_KINDS", "from_flax", "from_torch", "state_from_flax", "state_from_torch",
    "from_recurrentgemma", "from_mambapy", "from_xlstm", "from_mingru", "state_from_mingru",
]  # fmt: skip
