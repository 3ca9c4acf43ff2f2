"""mambapy's Mamba-1 block (``mambapy.mamba.MambaBlock``, PyTorch) -> a gradpaths ``MambaBlock``.

The block maps u [B, L, D] to o [B, L, D] (E = expand_factor · D inner channels):

.. math::

    [x̃, z] = \\mathrm{in\\_proj}(u),\\quad x = \\mathrm{silu}(\\mathrm{conv1d}(x̃)),\\quad
    y = \\mathrm{S6}(x),\\quad o = \\mathrm{out\\_proj}(y ⊙ \\mathrm{silu}(z))

with a depthwise causal conv1d of width K (left zero padding K−1) and S6 discretised as
h_t = exp(Δ_t A) h_{t-1} + (Δ_t B_t) x_t (zero-order hold on A only, ``ΔB x`` for the input).
The imported cell is ``gp.mamba(D, d_state=N, expand=E/D, d_conv=K, dt_rank=R)``: the
conv's window of the last K−1 inputs is state, read by the hop edge ``conv`` and carried
by the highway ``conv_shift`` (none when K = 2); h is the ``highway``. Weights are transposed to [in, out]:
W_in = in_proj.weightᵀ, w_conv = conv1d.weight[:, 0, :]ᵀ [K, E], x_proj.weight's rows split
into W_delta, W_B, W_C (R, N, N), W_dt = dt_proj.weightᵀ, b_dt = dt_proj.bias, W_out =
out_proj.weightᵀ.

Where the package is not the clean mathematics (tested in ``tests/test_interop_ssm.py``):

- **float32 casts.** ``ssm`` computes ``A = -exp(A_log.float())`` and ``D = D.float()``
  whatever the block's dtype. In a float64 block, A is A_log rounded to float32 and
  exponentiated in float32, and the gradients of A_log and D are rounded to float32 on
  their way back; everything else is float64. The importer folds the casts into the
  parameters (A_log ← log(exp(A_log in float32)), D ← D in float32, both back in the
  block's dtype), so the cell's forward pass is the block's: outputs, input gradients and
  the other parameter gradients equal the block's to 1e-12 in float64. The cell then
  computes in the block's dtype, so its A_log and D gradients are the unrounded ones: they
  equal the block's to float32 precision (about 1e-7 relative).
- The block starts from h = 0 and a zero conv window (no initial state); the cell's
  zero state is the same.

``config.inner_layernorms`` (RMSNorm on Δ, B, C) is not supported. A ``ResidualBlock``
adds an RMSNorm and a residual around the block, outside the recurrence: pass its
``.mixer``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from gradpaths.cells.ssm import MambaBlock

_MEMBERS = ("config", "in_proj", "conv1d", "x_proj", "dt_proj", "A_log", "D", "out_proj")


def _array(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _cast_like_mambapy(block) -> dict[str, np.ndarray]:
    """A_log and D as the block's ``ssm`` sees them: A = exp(A_log.float()), D.float(), in the
    block's dtype (float32 blocks: unchanged)."""
    import torch

    if block.A_log.dtype == torch.float32:
        return {}
    a = torch.exp(block.A_log.detach().float()).to(block.A_log.dtype)
    return {"A_log": np.log(_array(a)), "D": _array(block.D.detach().float().to(block.D.dtype))}


def from_mambapy(block: Any):
    """A mambapy ``MambaBlock`` -> ``(cell, params)`` with the block's outputs and gradients.

    Args:
      block: a ``mambapy.mamba.MambaBlock`` (a ``Mamba`` model's ``layers[i].mixer``), in
        float32 or float64 (``block.double()``).

    Returns:
      ``(cell, params)``: a ``gp.mamba`` cell (``MambaBlock``) and its parameter dict, in the
      dtype of the block's weights. ``gp.unroll(cell, params, u)`` with u [B, L, D] equals
      ``block(u)``.

    Raises:
      TypeError: for something that is not a mambapy Mamba block.
      NotImplementedError: for ``inner_layernorms=True``.
    """
    if hasattr(block, "mixer") and not hasattr(block, "in_proj"):
        raise TypeError("from_mambapy takes the MambaBlock itself: pass residual_block.mixer")
    missing = [m for m in _MEMBERS if not hasattr(block, m)]
    if missing:
        raise TypeError(f"from_mambapy expects a mambapy.mamba.MambaBlock; {type(block).__name__} lacks {missing}")
    cfg = block.config
    if getattr(cfg, "inner_layernorms", False):
        raise NotImplementedError("from_mambapy does not support inner_layernorms=True (RMSNorm on Δ, B, C)")
    d_model, e, n, r, k = cfg.d_model, cfg.d_inner, cfg.d_state, cfg.dt_rank, cfg.d_conv
    if e % d_model:
        raise ValueError(f"d_inner ({e}) must be a multiple of d_model ({d_model})")
    cell = MambaBlock(
        d_model,
        d_state=n,
        expand=e // d_model,
        d_conv=k,
        dt_rank=int(r),
        bias=block.in_proj.bias is not None,
        conv_bias=block.conv1d.bias is not None,
    )
    if (block.out_proj.bias is not None) != cell.bias:
        raise ValueError("in_proj and out_proj must both have a bias or both have none (mambapy's config.bias)")
    w_x = _array(block.x_proj.weight)  # [R + 2N, E]
    params = {
        "W_in": _array(block.in_proj.weight).T,
        "w_conv": _array(block.conv1d.weight)[:, 0, :].T,
        "W_delta": w_x[:r].T,
        "W_B": w_x[r : r + n].T,
        "W_C": w_x[r + n :].T,
        "W_dt": _array(block.dt_proj.weight).T,
        "b_dt": _array(block.dt_proj.bias),
        "A_log": _array(block.A_log),
        "D": _array(block.D),
        **_cast_like_mambapy(block),
        "W_out": _array(block.out_proj.weight).T,
    }
    if cell.bias:
        params["b_in"] = _array(block.in_proj.bias)
        params["b_out"] = _array(block.out_proj.bias)
    if cell.conv_bias:
        params["b_conv"] = _array(block.conv1d.bias)
    dtypes = {v.dtype for v in params.values()}
    if len(dtypes) != 1:
        raise TypeError(f"the block's weights must share one dtype, got {sorted(map(str, dtypes))}")
    return cell, {name: jnp.asarray(np.ascontiguousarray(v)) for name, v in params.items()}
