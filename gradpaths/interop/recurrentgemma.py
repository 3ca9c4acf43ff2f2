"""recurrentgemma's RG-LRU layer (``recurrentgemma.jax.layers.RGLRU``) -> a gradpaths ``RGLRU``.

The layer computes, for x [B, T, H] and ``segment_pos`` [B, T],

.. math::

    r_t = σ(\\mathrm{a\\_gate}(x_t)),\\quad i_t = σ(\\mathrm{input\\_gate}(x_t)),\\quad
    \\log a_t = -8\\, r_t ⊙ \\mathrm{softplus}(\\mathrm{a\\_param})
    h_t = a_t ⊙ h_{t-1} + \\sqrt{1 - a_t^2} ⊙ (i_t ⊙ x_t)

which is ``gp.rglru(H, num_heads=G)`` with Λ = −a_param and the block-diagonal gate
weights copied as they are (W_a = a_gate.w, W_x = input_gate.w, [G, H/G, H/G]).

Where the package is not the clean mathematics (each is tested in
``tests/test_interop_ssm.py``):

- **Reset at segment_pos == 0.** Where ``segment_pos == 0`` the layer sets a_t = 0 and
  replaces √(1 − a_t²) by 1: h_t = i_t ⊙ x_t, dropping the cache (h_0) and the input
  scaling. With the usual ``segment_pos = arange(T)`` the first step is therefore not the
  RG-LRU step. The cell has no reset: feed positions that never hit 0 (e.g.
  ``arange(1, T + 1)``; then the layer equals ``unroll`` from h_0 = cache, or zeros), or
  take the package's first output as ``state0`` and unroll the rest (equal exactly).
- **Clipped √ derivative.** The layer computes √(1 − a_t²) through a custom VJP that
  evaluates the derivative at max(1 − a_t², 1/(4·1000²)) (``sqrt_bound_derivative``).
  Gradients equal the exact ones wherever 1 − a_t² ≥ 2.5e-7 (always, with the package's
  init: a_t ≤ 0.999); where a_t is closer to 1 the package's gradient is the clipped one.
  The imported cell is exact by default; ``clip_sqrt_grad=True`` gives a cell with
  ``sqrt_max_gradient=1000``, whose gradient equals the package's there too.
- **float32 accumulation.** The layer's scan accumulates h in float32 whatever the
  dtype (``linear_scan``'s ``acc_float_dtype``), and its final state is float32. A
  float64 layer is therefore float64 except inside its recurrence, so the package agrees
  with the float64 cell only to float32 precision.

Only the real-valued layer (``only_real=True``, the package's default) is supported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from gradpaths.cells.ssm import RGLRU


def from_recurrentgemma(rglru_module: Any, variables: Mapping[str, Any], *, clip_sqrt_grad: bool = False):
    """A recurrentgemma ``RGLRU`` layer and its variables -> ``(cell, params)``.

    Args:
      rglru_module: a ``recurrentgemma.jax.layers.RGLRU`` (or any object with its
        ``width``, ``num_heads``, ``only_real`` and ``min_rad`` attributes).
      variables: the layer's variables, ``{"params": {...}}`` as ``module.init`` returns
        them, or the inner params dict ``{"a_param", "a_gate", "input_gate"}``.
      clip_sqrt_grad: reproduce the package's clipped √ derivative (see the module
        docstring); the default is the exact gradient.

    Returns:
      ``(cell, params)``: a ``gp.rglru(width, num_heads=...)`` and its parameter dict, in
      the dtype of the layer's parameters.

    Raises:
      TypeError: for something that is not an RG-LRU layer, or variables of the wrong form.
      NotImplementedError: for the complex-valued layer (``only_real=False``).
    """
    missing = [a for a in ("width", "num_heads", "only_real", "min_rad") if not hasattr(rglru_module, a)]
    if missing:
        raise TypeError(
            f"from_recurrentgemma expects a recurrentgemma.jax.layers.RGLRU; "
            f"{type(rglru_module).__name__} lacks {missing}"
        )
    if not rglru_module.only_real:
        raise NotImplementedError("from_recurrentgemma supports the real RG-LRU only (only_real=True)")
    if not isinstance(variables, Mapping):
        raise TypeError(f"variables must be the layer's variables dict, got {type(variables).__name__}")
    p = variables["params"] if "params" in variables else variables
    need = ("a_param", "a_gate", "input_gate")
    if any(k not in p for k in need):
        raise TypeError(f"RG-LRU variables need {need} (under 'params'); got keys {sorted(p)}")
    width, heads = int(rglru_module.width), int(rglru_module.num_heads)
    shapes = {
        "a_param": (width,),
        "a_gate.w": (heads, width // heads, width // heads),
        "a_gate.b": (heads, width // heads),
    }
    got = {
        "a_param": np.shape(p["a_param"]),
        "a_gate.w": np.shape(p["a_gate"]["w"]),
        "a_gate.b": np.shape(p["a_gate"]["b"]),
    }
    if got != shapes:
        raise ValueError(f"RG-LRU variables do not match width={width}, num_heads={heads}: want {shapes}, got {got}")
    cell = RGLRU(
        width,
        num_heads=heads,
        min_rad=float(rglru_module.min_rad),
        sqrt_max_gradient=1000.0 if clip_sqrt_grad else None,
    )
    params = {
        "W_a": jnp.asarray(p["a_gate"]["w"]),
        "b_a": jnp.asarray(p["a_gate"]["b"]),
        "W_x": jnp.asarray(p["input_gate"]["w"]),
        "b_x": jnp.asarray(p["input_gate"]["b"]),
        "Lambda": -jnp.asarray(p["a_param"]),
    }
    return cell, params
