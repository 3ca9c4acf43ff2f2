"""mingru-pytorch's ``minGRU`` and ``minLSTM`` modules -> gradpaths cells, exactly.

mingru-pytorch (lucidrains, ``pip install mingru-pytorch``) computes Feng et al.'s
log-space minGRU and minLSTM: a bias-free input map ``to_hidden_and_gate`` [dim ->
2·dim_inner] (minLSTM: ``to_hidden_and_f_i_gate``, 3·dim_inner, blocks hidden, f, i),
the recurrence with the positive activation g on the candidate, and an optional
bias-free ``to_out`` [dim_inner -> dim] (present when ``expansion_factor != 1`` or
``proj_out=True``). All three belong to the imported cell: ``gp.mingru(dim_inner,
bias=False, output_size=dim)`` (or ``gp.minlstm``), whose output is the module's output.

.. math::

    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ g(k_t)\\ \\text{(minGRU)},\\qquad
    h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ g(k_t)\\ \\text{(minLSTM)},\\qquad y_t = h_t W_{out}

For a sequence (T > 1) the package runs a log-space parallel scan (Heinsen's
``logcumsumexp``); for T = 1 it runs the step. Both compute the equations above, and
their autograd gradients equal the clean gradients up to rounding, with two exceptions
about an initial state ``prev_hidden`` (found by running the package; tested):

* **minLSTM, parallel mode, starts from g(prev_hidden), not prev_hidden.** It puts
  ``log_g(prev_hidden)`` into the scan, while its T = 1 step uses ``prev_hidden`` itself
  (and ``return_next_prev_hidden`` hands back h_T, so chaining two parallel calls applies
  g to the carried state). ``state_from_mingru(module, prev_hidden)`` gives the state that
  reproduces the parallel mode (h_0 = g(prev_hidden)); ``parallel=False`` gives the
  sequential mode's (h_0 = prev_hidden).
* **minGRU, parallel mode, takes log(prev_hidden)**: it equals the sequential mode for a
  positive ``prev_hidden`` (every state the module itself produces is positive, since
  g > 0) and gives NaN for a non-positive one. gradpaths computes the recurrence for any
  h_0.

Layout: torch's Linear weight is [out, in]; gradpaths keeps [in, out] (W_x = weightᵀ).
Inputs are batch-first [B, T, dim] in both.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from gradpaths.cells.classic import HState
from gradpaths.cells.gated_linear import MinGRU, MinLSTM, ProjState, g, mingru, minlstm

_INPUT_MAPS = {"minGRU": "to_hidden_and_gate", "minLSTM": "to_hidden_and_f_i_gate"}


def _array(tensor: Any) -> jnp.ndarray:
    return jnp.asarray(np.asarray(tensor.detach().cpu().numpy()))


def _kind(module: Any) -> str:
    for kind, attr in _INPUT_MAPS.items():
        if type(module).__name__ == kind and hasattr(module, attr):
            return kind
    raise TypeError(
        f"from_mingru takes mingru-pytorch's minGRU or minLSTM module, got {type(module).__name__} "
        f"(other layers of the package, e.g. minGRULM blocks, hold these modules as attributes)"
    )


def from_mingru(module: Any) -> tuple[MinGRU | MinLSTM, dict[str, jnp.ndarray]]:
    """Imports a mingru-pytorch ``minGRU`` or ``minLSTM`` module.

    Args:
      module: ``minGRU_pytorch.minGRU(dim, expansion_factor, proj_out)`` or
        ``minGRU_pytorch.minLSTM(...)``, on any device, float32 or float64.

    Returns:
      (cell, params): ``gp.mingru(dim_inner, bias=False, output_size=dim or None)`` (or
      ``gp.minlstm``) and ``{"W_x": [dim, G·dim_inner], "W_out": [dim_inner, dim]}`` (W_out
      only with ``to_out``), in the module's dtype. ``gp.unroll(cell, params, x)`` equals
      ``module(x)`` for x [B, T, dim].

    Example::

        cell, params = gp.interop.from_mingru(minGRU(dim=8, expansion_factor=2.0))
        d = gp.decompose(cell, params, xs, loss_fn, parts=("distance",))
    """
    kind = _kind(module)
    w_in = _array(getattr(module, _INPUT_MAPS[kind]).weight)
    gates = 2 if kind == "minGRU" else 3
    dim_inner = w_in.shape[0] // gates
    params = {"W_x": w_in.T}
    out = getattr(module, "to_out", None)
    output_size = None
    if out is not None and hasattr(out, "weight"):
        params["W_out"] = _array(out.weight).T
        output_size = params["W_out"].shape[1]
    make = mingru if kind == "minGRU" else minlstm
    return make(dim_inner, bias=False, output_size=output_size), params


def state_from_mingru(module: Any, prev_hidden: Any, *, parallel: bool = True) -> HState | ProjState:
    """The gradpaths ``state0`` that reproduces ``module(x, prev_hidden)``.

    Args:
      module: the imported minGRU or minLSTM module.
      prev_hidden: the package's initial state [B, 1, dim_inner] (or [B, dim_inner]).
      parallel: reproduce the package's parallel mode (its call with T > 1; default) or its
        sequential T = 1 step. They differ for minLSTM only: the parallel mode starts from
        g(prev_hidden) (see the module docstring).

    Returns:
      HState(h_0), or ProjState(h_0, y_0 = 0) when the module has ``to_out`` (y_0 is never read).
    """
    kind = _kind(module)
    h0 = _array(prev_hidden)
    if h0.ndim == 3:
        if h0.shape[1] != 1:
            raise ValueError(f"prev_hidden must be [B, 1, dim_inner] or [B, dim_inner], got shape {h0.shape}")
        h0 = h0[:, 0]
    if kind == "minLSTM" and parallel:
        h0 = g(h0)
    out = getattr(module, "to_out", None)
    if out is None or not hasattr(out, "weight"):
        return HState(h0)
    return ProjState(h0, jnp.zeros((*h0.shape[:-1], out.weight.shape[0]), h0.dtype))
