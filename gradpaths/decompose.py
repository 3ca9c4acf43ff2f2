"""Exact decompositions of the parameter gradient, by step, distance and hop class.

With s_t = F_θ(e_t, x_t), e_t = read(s_{t-1}) and λ_t = ∂L/∂s_t, the gradient is

.. math::

    G = Σ_t (∂^+F_t/∂θ)^T λ_t,\\qquad λ_{t-1} = J_{hwy,t}^T λ_t + J_{hop,t}^T λ_t + ∂L/∂s_{t-1}.

Each split is a linear re-bucketing of the same backward pass, so each sums to G:

- by step: G_t = (∂⁺F_t/∂θ)ᵀ λ_t.
- by hops: λ_{t-1}^{[k]} = J_hwyᵀ λ_t^{[k]} + J_hopᵀ λ_t^{[k-1]} (+ the loss seed at k = 0);
  the last bucket K collects k ≥ K. G^{[k]} = Σ_t (∂⁺F_t/∂θ)ᵀ λ_t^{[k]}.
- by distance: the cotangent is indexed by d = τ - t (loss time minus use time), so
  one reverse scan carries all loss times at once: λ_{t-1}^{(d)} = Jᵀ λ_t^{(d-1)},
  λ_{t-1}^{(0)} = ∂L/∂s_{t-1}; G_d = Σ_t (∂⁺F_t/∂θ)ᵀ λ_t^{(d)}.

All cotangent buckets go through one VJP of the (elementwise) cell core, vmapped, and
one matmul with W_hᵀ. Parameter gradients are outer products of stored inputs with
the cotangents of u_t = x_t W_x + b and a_t = m_t W_h + b_h, so they are contracted
as large matmuls after the scan. The batch is summed inside those contractions:
nothing per-example and nothing of size T² × params is ever held.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradpaths.cells import Cell
from gradpaths.unroll import Forward, check_scales, contract, forward, reverse, to_batch_major, unroll

PARTS = ("step", "distance", "hops", "state", "distance_hops")
DEFAULT_PARTS = ("step", "distance", "hops", "state")


class Decomposition(NamedTuple):
    """The parts of dL/dθ. Parts not asked for are None.

    Attributes:
      total: like params; equals jax.grad of the loss.
      by_step: like params, leading axis [T]: the gradient through θ's use at step t.
      by_distance: like params, leading axis [T]: d = 0..T-1 (loss time - use time).
      by_hops: like params, leading axis [K+1]: paths crossing k hop edges (last: k ≥ K).
      state_grads: like the cell state, leading axes [T, K+1] then the batch axes:
        dL/ds_t carried by each hop class.
      by_distance_hops: like params, leading axes [T, K+1]: the joint table.
      loss: the loss value.
      finite: whether the loss and every gradient in here are finite.
    """

    total: Any
    by_step: Any = None
    by_distance: Any = None
    by_hops: Any = None
    state_grads: Any = None
    by_distance_hops: Any = None
    loss: jax.Array | None = None
    finite: jax.Array | None = None


def _check_options(max_hops: Any, parts: Any) -> tuple[str, ...]:
    if isinstance(max_hops, bool) or not isinstance(max_hops, int):
        raise TypeError(f"max_hops must be an int >= 0, got {type(max_hops).__name__} {max_hops!r}")
    if max_hops < 0:
        raise ValueError(f"max_hops must be an int >= 0, got {max_hops}")
    if isinstance(parts, str) or not isinstance(parts, Sequence):
        raise TypeError(f"parts must be a tuple of names from {PARTS}, got {parts!r}")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; valid parts are {PARTS}")
    return tuple(parts)


def loss_and_seeds(cell: Cell, fwd: Forward, batch_shape, loss_fn: Callable):
    """The loss and the loss seeds ∂L/∂s_t (direct, through h_t only) [T, B, ...]."""
    hs_TB = cell.output(fwd.states)
    hs = to_batch_major(hs_TB, batch_shape)
    out = jax.eval_shape(loss_fn, hs)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"loss_fn must return a scalar, got {shape} for hs of shape {hs.shape}")
    loss, dhs = jax.value_and_grad(loss_fn)(hs)
    dh_TB = jnp.swapaxes(dhs.reshape(-1, *hs_TB.shape[:1], hs_TB.shape[-1]), 0, 1)
    _, out_vjp = jax.vjp(cell.output, fwd.states)
    (seeds,) = out_vjp(dh_TB.astype(hs_TB.dtype))
    return loss, seeds


def _by_bucket(cell: Cell, x_TBI, m_TBH, du_TBKN, da_TBKN) -> dict[str, jax.Array]:
    """G^[k] for every bucket k as one GEMM each: the K1 buckets ride along the output width,
    [(t b), i]ᵀ [(t b), (k n)] -> [k, i, n], so (t, b) is contracted once for all buckets."""
    n_t, b, k1, n = du_TBKN.shape
    wide = lambda v: v.reshape(n_t, b, k1 * n)
    g = contract(cell, x_TBI, m_TBH, wide(du_TBKN), wide(da_TBKN), "tbi,tbn->in")
    return jax.tree.map(lambda v: jnp.moveaxis(v.reshape(*v.shape[:-1], k1, n), -2, 0), g)


def decompose(
    cell: Cell,
    params,
    xs: jax.Array,
    loss_fn: Callable[[jax.Array], jax.Array],
    *,
    max_hops: int = 8,
    parts: Sequence[str] = DEFAULT_PARTS,
    state0=None,
) -> Decomposition:
    """Splits dL/dθ of ``loss_fn(unroll(cell, params, xs))`` exactly into parts.

    Args:
      cell, params: the cell and its parameters.
      xs: inputs [T, I] or batch-major [..., T, I]; the loss sums over the batch as it likes.
      loss_fn: hs [..., T, H] -> scalar.
      max_hops: K; hop classes 0..K-1 are exact counts, class K collects k ≥ K.
      parts: any of "step", "distance", "hops", "state", "distance_hops".
      state0: initial state (zeros if None).

    Returns:
      A ``Decomposition``. Every part sums (over its leading axes) to ``total``.

    Example:
      >>> cell = gp.lstm(8); params = cell.init(jax.random.key(0), 3)
      >>> d = gp.decompose(cell, params, xs, lambda hs: hs[-1].sum(), max_hops=2)
      >>> jax.tree.map(lambda g: g.sum(0), d.by_hops)   # == d.total
    """
    parts = _check_options(max_hops, parts)
    fwd, batch_shape = forward(cell, params, xs, state0, save_vjp=True)
    loss, seeds = loss_and_seeds(cell, fwd, batch_shape, loss_fn)
    k1 = max_hops + 1
    want = set(parts)
    res: dict[str, Any] = {}

    if want & {"distance", "distance_hops"}:
        joint = "distance_hops" in want
        g_dk, _, _ = reverse(cell, params, fwd, seeds, k1 if joint else 1, by_distance=True)
        if joint:
            res["by_distance_hops"] = g_dk
        if "distance" in want:
            res["by_distance"] = jax.tree.map(lambda g: g.sum(1), g_dk)
        res["total"] = jax.tree.map(lambda g: g.sum((0, 1)), g_dk)

    if want & {"step", "hops", "state"} or "total" not in res:
        split = bool(want & {"hops", "state"})
        _, (du, da, lam), _ = reverse(cell, params, fwd, seeds, k1 if split else 1, keep_state="state" in want)
        da = du if da is None else da
        x, m = fwd.x_TBI, fwd.m_TBH
        if "hops" in want:
            res["by_hops"] = _by_bucket(cell, x, m, du, da)
        if "state" in want:
            res["state_grads"] = jax.tree.map(lambda v: v.reshape(*v.shape[:2], *batch_shape, v.shape[-1]), lam)
        du_t, da_t = du.sum(2), da.sum(2)
        if "step" in want:
            res["by_step"] = contract(cell, x, m, du_t, da_t, "tbi,tbn->tin")
        if "hops" in want:
            res["total"] = jax.tree.map(lambda g: g.sum(0), res["by_hops"])
        elif "step" in want:
            res["total"] = jax.tree.map(lambda g: g.sum(0), res["by_step"])
        else:
            res["total"] = contract(cell, x, m, du_t, da_t, "tbi,tbn->in")

    finite = jnp.isfinite(loss)
    for leaf in jax.tree.leaves(res):
        finite = finite & jnp.all(jnp.isfinite(leaf))
    return Decomposition(loss=loss, finite=finite, **res)


def masked_grad(
    cell: Cell,
    params,
    xs: jax.Array,
    loss_fn: Callable,
    scales: Mapping[str, Any],
    state0=None,
    backward: str = "autodiff",
):
    """dL/dθ with the gradient through each named edge scaled by α (forward unchanged).

    With the hop edges scaled by α and no bucket clamped,
    masked_grad = Σ_k α^k by_hops[k] exactly. The default ``backward="autodiff"``
    differentiates ``sg(e) + α (e - sg(e))`` with plain JAX autodiff, independently of
    the hand-built reverse scan that ``decompose`` uses, so the identity is a real check;
    ``backward="custom"`` is faster.
    """
    check_scales(cell, scales)
    return jax.grad(lambda p: loss_fn(unroll(cell, p, xs, state0, scales, backward=backward)))(params)
