"""gradpaths: exact path decompositions of recurrent-network gradients."""

from gradpaths import cells, interop, parallel, tasks, train  # interop imports its frameworks only when called
from gradpaths.cells import *  # noqa: F403  (every cell family, its constructors, the protocol and the registry)
from gradpaths.check import check_cell
from gradpaths.decompose import Decomposition, decompose, masked_grad
from gradpaths.spectra import DecayFit, edge_jacobians, fit_decay_rate, lyapunov_exponents
from gradpaths.unroll import unroll, unroll_states


def __getattr__(name: str):
    """``gp.plots`` is imported on first use, so ``import gradpaths`` does not import matplotlib."""
    if name == "plots":
        import importlib

        return importlib.import_module("gradpaths.plots")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [  # noqa: F405  ("plots" loads on use)
    *cells.__all__,
    "cells",
    "check_cell",
    "unroll",
    "unroll_states",
    "decompose",
    "masked_grad",
    "Decomposition",
    "edge_jacobians",
    "lyapunov_exponents",
    "fit_decay_rate",
    "DecayFit",
    "interop",
    "parallel",
    "plots",
    "tasks",
    "train",
]
