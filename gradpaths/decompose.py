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

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradpaths import engine
from gradpaths._checks import check_int as _check_int
from gradpaths.unroll import (
    Forward,
    check_cell_members,
    check_hop_edges,
    check_scales,
    forward,
    is_affine,
    outputs_TB,
    prepare,
    step_batch,
    to_batch_major,
    unroll,
)

PARTS = ("step", "distance", "hops", "state", "distance_hops", "step_hops")
DEFAULT_PARTS = ("step", "distance", "hops", "state")


class Decomposition(NamedTuple):
    """The parts of dL/dθ. Parts not asked for are None.

    Attributes:
      total: like params; equals jax.grad of the loss.
      by_step: like params, leading axis [T]: the gradient through θ's use at step t.
      by_distance: like params, leading axis [T] (d = 0..T-1, loss time - use time), or
        [D + 1] with ``max_distance=D`` (the last bucket collects d ≥ D).
      by_hops: like params, leading axis [K+1]: paths crossing k hop edges (last: k ≥ K).
      state_grads: like the cell state, leading axes [T, K+1] then the batch axes:
        dL/ds_t carried by each hop class.
      by_distance_hops: like params, leading axes [distance, K+1]: the joint table.
      loss: the loss value.
      finite: whether the loss and every gradient in here are finite.
      by_step_hops: like params, leading axes [T, K+1]: the joint table G_{t,k}. It costs
        O(T·K) where the distance table costs O(T·D); for a loss at one time τ only,
        by_distance_hops[d] = by_step_hops[τ - d].
    """

    total: Any
    by_step: Any = None
    by_distance: Any = None
    by_hops: Any = None
    state_grads: Any = None
    by_distance_hops: Any = None
    loss: jax.Array | None = None
    finite: jax.Array | None = None
    by_step_hops: Any = None  # after loss and finite: the older fields keep their positions


def _check_options(max_hops: Any, parts: Any, max_distance: Any) -> tuple[str, ...]:
    _check_int("max_hops", max_hops, 0)
    if max_distance is not None:
        _check_int("max_distance", max_distance, 1)
    if isinstance(parts, str) or not isinstance(parts, Sequence):
        raise TypeError(f"parts must be a tuple of names from {PARTS}, got {parts!r}")
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; valid parts are {PARTS}")
    return tuple(parts)


def loss_and_seeds(cell, fwd: Forward, batch_shape, loss_fn: Callable):
    """The loss and the loss seeds ∂L/∂s_t (direct, through h_t only) [T, B, ...]."""
    hs_TB, out_vjp = jax.vjp(lambda s: outputs_TB(cell, s), fwd.states)
    hs = to_batch_major(hs_TB, batch_shape)
    loss, dhs = _value_and_grad(loss_fn, hs)
    dh_TB = jnp.swapaxes(dhs.reshape(-1, *hs_TB.shape[:1], *hs_TB.shape[2:]), 0, 1)
    (seeds,) = out_vjp(dh_TB.astype(hs_TB.dtype))
    return loss, seeds


def _by_bucket(cell, x_TBI, m_TBH, du_TBKN, da_TBKN, per_step: bool = False) -> dict[str, jax.Array]:
    """G^[k] for every bucket k as one GEMM each: the K1 buckets ride along the output width,
    [(t b), i]ᵀ [(t b), (k n)] -> [k, i, n], so (t, b) is contracted once for all buckets;
    ``per_step``: G_{t,k} [t, k, i, n], contracting b only."""
    n_t, b, k1, n = du_TBKN.shape
    wide = lambda v: v.reshape(n_t, b, k1 * n)
    spec, lead = ("tbi,tbn->tin", 1) if per_step else ("tbi,tbn->in", 0)
    g = engine.contract(cell, x_TBI, m_TBH, wide(du_TBKN), wide(da_TBKN), spec)
    return jax.tree.map(lambda v: jnp.moveaxis(v.reshape(*v.shape[:-1], k1, n), -2, lead), g)


def _sum(tree, axes):
    return jax.tree.map(lambda g: g.sum(axes), tree)


def decompose(
    cell,
    params,
    xs: jax.Array,
    loss_fn: Callable[[jax.Array], jax.Array],
    *,
    max_hops: int = 8,
    parts: Sequence[str] = DEFAULT_PARTS,
    state0=None,
    hop_edges: Sequence[str] | None = None,
    max_distance: int | None = None,
    chunk: int | str | None = None,
) -> Decomposition:
    """Splits dL/dθ of ``loss_fn(unroll(cell, params, xs))`` exactly into parts.

    Args:
      cell, params: any protocol cell and its parameters.
      xs: inputs [T, I] or batch-major [..., T, I]; the loss sums over the batch as it likes.
      loss_fn: hs [..., T, H] -> scalar.
      max_hops: K; hop classes 0..K-1 are exact counts, class K collects k ≥ K.
      parts: any of "step", "distance", "hops", "state", "distance_hops", "step_hops".
      state0: initial state (zeros if None).
      hop_edges: the edges whose crossings count as hops (default ``cell.hop_edges``).
      max_distance: D; distances 0..D-1 are exact and bucket D collects d ≥ D, so the
        distance parts cost O(T·D) instead of O(T²). None: every distance 0..T-1.
      chunk: rematerialise the forward pass in chunks of this many steps ("sqrt": ⌈√T⌉),
        keeping only each chunk's first state: memory O(T/C + C) states, for one more
        forward pass (the generic engine runs it, for every cell). None: keep every step.

    Returns:
      A ``Decomposition``. Every part sums (over its leading axes) to ``total``.

    Example:
      >>> cell = gp.lstm(8); params = cell.init(jax.random.key(0), 3)
      >>> d = gp.decompose(cell, params, xs, lambda hs: hs[-1].sum(), max_hops=2)
      >>> jax.tree.map(lambda g: g.sum(0), d.by_hops)   # == d.total
    """
    parts = _check_options(max_hops, parts, max_distance)
    check_cell_members(cell)
    hops = cell.hop_edges if hop_edges is None else check_hop_edges(cell, hop_edges)
    if chunk is None:
        fwd, batch_shape = forward(cell, params, xs, state0)
        loss, seeds = loss_and_seeds(cell, fwd, batch_shape, loss_fn)
        n_t = fwd.x_TBI.shape[0]
        base = _affine if is_affine(cell) else _generic
        rev = functools.partial(base, cell, params, fwd, seeds, hops)
    else:
        x_TBI, s0, _, batch_shape = prepare(cell, params, xs, state0, None)
        n_t = x_TBI.shape[0]
        loss, dh_TBH = _loss_and_output_grads(cell, params, x_TBI, s0, batch_shape, loss_fn)
        size = _check_chunk(chunk, n_t)
        rev = functools.partial(_chunked, cell, params, x_TBI, s0, dh_TBH, hops, size)
    n_d, tail = (n_t, False) if max_distance is None or max_distance >= n_t - 1 else (max_distance + 1, True)
    k1 = max_hops + 1
    want = set(parts)
    joint = "distance_hops" in want
    res: dict[str, Any] = {}

    if want & {"distance", "distance_hops"}:
        g_dk, _, _ = rev(k1 if joint else 1, n_d, tail, False, False)
        if joint:
            res["by_distance_hops"] = g_dk
        if "distance" in want:
            res["by_distance"] = _sum(g_dk, 1)
        res["total"] = _sum(g_dk, (0, 1))

    if want & {"step", "hops", "state", "step_hops"} or "total" not in res:
        split = bool(want & {"hops", "state", "step_hops"})
        per_step = "hops" if "step_hops" in want else "step" in want
        g_k, g_t, lam = rev(k1 if split else 1, 1, False, per_step, "state" in want)
        if "hops" in want:
            res["by_hops"] = g_k
        if "state" in want:
            res["state_grads"] = jax.tree.map(lambda v: v.reshape(*v.shape[:2], *batch_shape, *v.shape[3:]), lam)
        if "step_hops" in want:
            res["by_step_hops"] = g_t
        if "step" in want:
            res["by_step"] = _sum(g_t, 1) if "step_hops" in want else g_t
        res["total"] = _sum(g_k, 0)

    finite = jnp.isfinite(loss)
    for leaf in jax.tree.leaves(res):
        finite = finite & jnp.all(jnp.isfinite(leaf))
    return Decomposition(loss=loss, finite=finite, **res)


def _check_chunk(chunk: Any, n_t: int) -> int:
    if chunk == "sqrt":
        return max(1, math.isqrt(n_t - 1) + 1)
    _check_int("chunk", chunk, 1)
    return min(chunk, n_t)


def _loss_and_output_grads(cell, params, x_TBI, s0, batch_shape, loss_fn):
    """The loss and ∂L/∂h_t [T, B, H] from a forward scan that keeps only the outputs."""

    def body(s, x):
        new = step_batch(cell, params, s, x)
        return new, jax.vmap(cell.output)(new)

    _, hs_TB = jax.lax.scan(body, s0, x_TBI)
    hs = to_batch_major(hs_TB, batch_shape)
    loss, dhs = _value_and_grad(loss_fn, hs)
    return loss, jnp.swapaxes(dhs.reshape(-1, *hs_TB.shape[:1], *hs_TB.shape[2:]), 0, 1).astype(hs_TB.dtype)


def _value_and_grad(loss_fn, hs):
    out = jax.eval_shape(loss_fn, hs)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"loss_fn must return a scalar, got {shape} for hs of shape {hs.shape}")
    return jax.value_and_grad(loss_fn)(hs)


def _chunked(cell, params, x_TBI, s0, dh_TBH, hops, chunk, n_hops, n_d, tail, per_step, keep_state):
    g, g_t, lam = engine.chunked_reverse(
        cell, params, x_TBI, s0, dh_TBH, hops, n_hops, n_d, tail, per_step, keep_state, chunk
    )
    return (g if n_d > 1 else _sum(g, 0)), g_t, lam


def _generic(cell, params, fwd, seeds, hops, n_hops, n_d, tail, per_step, keep_state):
    """(G [n_d, K1, ...], or [K1, ...] when n_d = 1; G_t [T, ...] or None; λ or None)."""
    (_, g), (g_t, lam) = engine.generic_reverse(
        cell, params, fwd, seeds, {}, hops, n_hops, n_d, tail, per_step, keep_state
    )
    return (g if n_d > 1 else _sum(g, 0)), g_t, lam


def _affine(cell, params, fwd, seeds, hops, n_hops, n_d, tail, per_step, keep_state):
    """The fast path, with the same outputs as ``_generic``."""
    g, outs, _ = engine.affine_reverse(cell, params, fwd, seeds, hops, n_hops, n_d, tail, keep_state)
    if n_d > 1:
        return g, None, None
    du, da, lam = outs
    da = du if da is None else da
    x, m = fwd.x_TBI, fwd.m_TBH
    if per_step == "hops":
        g_tk = _by_bucket(cell, x, m, du, da, per_step=True)
        return _sum(g_tk, 0), g_tk, lam
    g_t = engine.contract(cell, x, m, du.sum(2), da.sum(2), "tbi,tbn->tin") if per_step else None
    return _by_bucket(cell, x, m, du, da), g_t, lam


def masked_grad(
    cell,
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
    check_cell_members(cell)
    check_scales(cell, scales)
    return jax.grad(lambda p: loss_fn(unroll(cell, p, xs, state0, scales, backward=backward)))(params)
