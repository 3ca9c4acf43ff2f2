"""The forward pass: one ``lax.scan`` over time, with optional per-edge gradient scales.

An edge scale α leaves the forward values unchanged and scales the gradient through
that edge by α (α = 0 is ``stop_gradient``, as in h-detach):

.. math::

    e ← \\mathrm{sg}(e) + α (e - \\mathrm{sg}(e))

α may be a scalar or an array of per-step scales [T] (or [..., T] matching the batch),
which is how random h-detach masks enter.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradpaths.cells import Cell, check_params


class Forward(NamedTuple):
    """What the backward pass needs, stored once in the forward pass (time-major).

    Attributes:
      x_TBI: inputs. u_TBN: x W_x + b. m_TBH: the matmul edge's input (h_{t-1}).
      states: s_t for each t. a_TBN: the recurrent pre-activations, and prev: the state
      s_{t-1} for each t (both None when ``core_vjp`` is saved instead). core_vjp: the
      VJP of the elementwise core at every step, its residuals (gate values and their
      derivatives) stacked over t, so the reverse scan recomputes no forward value.
    """

    x_TBI: jax.Array
    u_TBN: jax.Array
    a_TBN: jax.Array | None
    m_TBH: jax.Array
    prev: Any
    states: Any
    core_vjp: Any = None


def check_inputs(cell: Cell, params: Any, xs: Any) -> tuple[int, tuple[int, ...], int]:
    """Validates cell, params and xs [..., T, I]; returns (T, batch_shape, I)."""
    input_size = check_params(cell, params)
    shape = getattr(xs, "shape", None)
    if shape is None:
        raise TypeError(f"xs must be an array of shape [..., T, I], got {type(xs).__name__}")
    if len(shape) < 2:
        raise ValueError(f"xs must have shape [T, I] or [..., T, I] (at least 2-D), got shape {tuple(shape)}")
    if shape[-1] != input_size:
        raise ValueError(
            f"xs has input size {shape[-1]} (last axis) but params expect I={input_size}; xs shape {tuple(shape)}"
        )
    if shape[-2] < 1:
        raise ValueError(f"xs must have at least one time step, got shape {tuple(shape)}")
    return shape[-2], tuple(shape[:-2]), input_size


def check_scales(cell: Cell, scales: Mapping[str, Any] | None) -> dict[str, Any]:
    if scales is None:
        return {}
    if not isinstance(scales, Mapping):
        raise TypeError(f"scales must be a dict {{edge: alpha}} over edges {cell.edges}, got {type(scales).__name__}")
    unknown = sorted(set(scales) - set(cell.edges))
    if unknown:
        raise ValueError(f"unknown edge(s) {unknown} in scales; {type(cell).__name__} has edges {cell.edges}")
    return dict(scales)


def _scale_grad(x: jax.Array, alpha: jax.Array) -> jax.Array:
    sg = jax.lax.stop_gradient(x)
    return sg + alpha * (x - sg)


def _batch_first(state, batch_shape, b: int):
    return jax.tree.map(lambda s: jnp.broadcast_to(s, (*batch_shape, s.shape[-1])).reshape(b, s.shape[-1]), state)


def _prepare(cell: Cell, params, xs, state0, scales):
    """xs [..., T, I] -> (x_TBI, s0 [B, ...], alphas {edge: [T, B, 1]}, batch_shape)."""
    n_t, batch_shape, n_i = check_inputs(cell, params, xs)
    scales = check_scales(cell, scales)
    dtype = params["W_x"].dtype
    b = int(np.prod(batch_shape, dtype=int))
    x_TBI = jnp.swapaxes(jnp.asarray(xs, dtype).reshape(b, n_t, n_i), 0, 1)
    s0 = cell.zero_state((), dtype) if state0 is None else state0
    s0 = _batch_first(jax.tree.map(lambda s: jnp.asarray(s, dtype), s0), batch_shape, b)
    alphas = {k: _per_step(jnp.asarray(v, dtype), n_t, batch_shape, b) for k, v in scales.items()}
    return x_TBI, s0, alphas, batch_shape


def _scan(cell: Cell, params, x_TBI, s0, alphas, save_vjp: bool) -> Forward:
    """The forward scan. With ``save_vjp`` each step also returns the VJP of its core.

    The loop writes only s_t (and the VJP residuals); u_t, s_{t-1}, m_t and a_t are rebuilt
    after it, outside the loop, where needed (XLA drops what is not used). Inside the loop
    u_t = x_t W_x + b is one small matmul: on XLA:CPU this measured faster than slicing a
    hoisted u [T, B, G·H], whose dynamic slice gets fused into (and slows) every
    elementwise kernel that reads it.
    """
    mm = cell.matmul_edge

    def step(s, inp):
        x, alpha = inp
        u = x @ params["W_x"] + params["b"]
        e = cell.read(s)
        e = {k: _scale_grad(v, alpha[k]) if k in alpha else v for k, v in e.items()}
        a = cell.recurrent(params, e[mm])
        if save_vjp:
            new, core_vjp = jax.vjp(cell.core, u, a, {k: v for k, v in e.items() if k != mm})
            return new, (new, core_vjp)
        new = cell.core(u, a, e)
        return new, (new, None)

    _, (states, core_vjp) = jax.lax.scan(step, s0, (x_TBI, alphas))
    prev = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest[:-1]]), s0, states)
    m_TBH = cell.read(prev)[mm]
    u_TBN = x_TBI @ params["W_x"] + params["b"]
    a_TBN = None if save_vjp else cell.recurrent(params, m_TBH)
    return Forward(x_TBI, u_TBN, a_TBN, m_TBH, None if save_vjp else prev, states, core_vjp)


def forward(cell: Cell, params, xs: jax.Array, state0=None, scales=None, save_vjp: bool = False):
    """Runs the scan on xs [..., T, I]; returns time-major residuals and the batch shape."""
    x_TBI, s0, alphas, batch_shape = _prepare(cell, params, xs, state0, scales)
    return _scan(cell, params, x_TBI, s0, alphas, save_vjp), batch_shape


def _per_step(alpha: jax.Array, n_t: int, batch_shape, b: int) -> jax.Array:
    """An edge scale as [T, B, 1]: scalar, [T] or [..., T] matching the batch."""
    if alpha.ndim == 0:
        return jnp.broadcast_to(alpha, (n_t, b, 1))
    if alpha.shape[-1] != n_t:
        raise ValueError(f"an edge scale must be a scalar, [T] or [..., T] with T={n_t}, got shape {alpha.shape}")
    alpha = jnp.broadcast_to(alpha, (*batch_shape, n_t)).reshape(b, n_t)
    return alpha.T[..., None]


def to_batch_major(y_TB, batch_shape):
    """[T, B, ...] -> [..., T, ...] with the original batch axes restored."""
    return jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1).reshape(*batch_shape, *v.shape[:1], *v.shape[2:]), y_TB)


def _shift(x: jax.Array, axis: int, clamp: bool) -> jax.Array:
    """Moves bucket j to j+1 along ``axis``; the last bucket keeps its own if ``clamp``."""
    head = jnp.zeros_like(jax.lax.slice_in_dim(x, 0, 1, axis=axis))
    body = jax.lax.slice_in_dim(x, 0, x.shape[axis] - 1, axis=axis)
    out = jnp.concatenate([head, body], axis=axis)
    if clamp:
        last = jax.lax.slice_in_dim(x, x.shape[axis] - 1, x.shape[axis], axis=axis)
        out = out + jnp.concatenate([jnp.zeros_like(body), last], axis=axis)
    return out


def contract(cell: Cell, x, m, du, da, spec: str) -> dict[str, jax.Array]:
    """(∂⁺F/∂θ)ᵀ applied to cotangents, as einsums ``spec`` = "x,ct->out" over the
    input letter i: W_x ← xᵀdu, W_h ← mᵀda, b ← Σdu, b_h ← Σda (batch b summed)."""
    ins, out = spec.split("->")
    ct_spec = ins.split(",")[1]
    bias = f"{ct_spec}->{out.replace('i', '')}"
    grads = {
        "W_x": jnp.einsum(spec, x, du),
        "W_h": jnp.einsum(spec, m, da),
        "b": jnp.einsum(bias, du),
    }
    if cell.has_b_h:
        grads["b_h"] = jnp.einsum(bias, da)
    return grads


def reverse(
    cell: Cell,
    params,
    fwd: Forward,
    seeds,
    n_hops: int = 1,
    by_distance: bool = False,
    keep_state: bool = False,
    alphas=None,
):
    """The bucketed reverse scan over the saved core VJPs (``forward(..., save_vjp=True)``).

    The carry is λ [D, K1, B, state] with D = T (distance-indexed) or 1, and K1 =
    ``n_hops`` buckets. Per step: λ += seed (bucket [0, 0]); (du, da, de) = VJP_core(λ)
    for every bucket (vmapped); the matmul edge gets da W_hᵀ (one GEMM over all
    buckets); each edge cotangent is scaled by its α_t; highway edges keep the bucket,
    hop edges move it one up (the last bucket clamps) and D moves one up.

    Args:
      seeds: ∂L/∂s_t directly [T, B, ...] (a state pytree).
      alphas: ``{edge: [T, B, 1]}`` gradient scales (the custom VJP of ``unroll``).

    Returns:
      (g, outs, lam_0): with D = T, g holds the parameter gradients [T, K1, ...] and outs
      the per-step λ [T, K1, B, ...] (or None); with D = 1, g is None and outs is
      (du [T, B, K1, G·H], da (None for additive cells), λ [T, K1, B, ...] or None). lam_0 [D, K1, B, ...]
      is ∂L/∂s_0.
    """
    n_t = fwd.u_TBN.shape[0]
    n_d = n_t if by_distance else 1
    mm = cell.matmul_edge
    w_h_T = params["W_h"].T
    alphas = {} if alphas is None else alphas
    state_1 = jax.tree.map(lambda s: s[0], seeds)
    read_T = jax.linear_transpose(cell.read, state_1)
    lam0 = jax.tree.map(lambda s: jnp.zeros((n_d, n_hops, *s.shape), s.dtype), state_1)
    g0 = None
    if by_distance:
        g0 = jax.tree.map(lambda p: jnp.zeros((n_d, n_hops, *p.shape), p.dtype), params)

    def vv(f):
        return jax.vmap(jax.vmap(f))

    def step(carry, inp):
        lam, g = carry
        core_vjp, seed, x, m, alpha = inp
        lam = jax.tree.map(lambda lm, sd: lm.at[0, 0].add(sd), lam, seed)
        du, da, de = vv(core_vjp)(lam)
        edge_ct = {**de, mm: da @ w_h_T}
        edge_ct = {k: v * alpha[k] if k in alpha else v for k, v in edge_ct.items()}

        def to_state(names):
            return vv(read_T)({k: (v if k in names else jnp.zeros_like(v)) for k, v in edge_ct.items()})[0]

        hwy, hop = to_state(cell.highway_edges), to_state(cell.hop_edges)
        if n_hops > 1:
            hop = jax.tree.map(lambda h: _shift(h, 1, clamp=True), hop)
        new = jax.tree.map(jnp.add, hwy, hop)
        kept = jax.tree.map(lambda v: v[0], lam) if keep_state else None
        if by_distance:
            new = jax.tree.map(lambda v: _shift(v, 0, clamp=False), new)
            g = jax.tree.map(jnp.add, g, contract(cell, x, m, du, da, "bi,dkbn->dkin"))
            return (new, g), kept
        bk = lambda v: jnp.swapaxes(v[0], 0, 1)  # [B, K1, G·H]: (t, b) adjacent for the contraction GEMM
        return (new, g), (bk(du), None if cell.additive else bk(da), kept)

    inputs = (fwd.core_vjp, seeds, fwd.x_TBI, fwd.m_TBH, alphas)
    (lam_0, g), outs = jax.lax.scan(step, (lam0, g0), inputs, reverse=True)
    return g, outs, lam_0


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _states(cell: Cell, params, x_TBI, s0, alphas):
    return _scan(cell, params, x_TBI, s0, alphas, save_vjp=False).states


def _states_fwd(cell: Cell, params, x_TBI, s0, alphas):
    fwd = _scan(cell, params, x_TBI, s0, alphas, save_vjp=True)
    return fwd.states, (params, fwd, alphas)


def _states_bwd(cell: Cell, res, ct_states):
    params, fwd, alphas = res
    _, (du, da, _), lam_0 = reverse(cell, params, fwd, ct_states, alphas=alphas)
    du = du[:, :, 0]
    da = du if da is None else da[:, :, 0]
    grads = contract(cell, fwd.x_TBI, fwd.m_TBH, du, da, "tbi,tbn->in")
    d_x = du @ params["W_x"].T
    d_s0 = jax.tree.map(lambda v: v[0, 0], lam_0)
    return grads, d_x, d_s0, jax.tree.map(jnp.zeros_like, alphas)


_states.defvjp(_states_fwd, _states_bwd)

BACKWARDS = ("custom", "autodiff")


def _run(cell: Cell, params, xs, state0, scales, backward: str):
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    x_TBI, s0, alphas, batch_shape = _prepare(cell, params, xs, state0, scales)
    if backward == "custom":
        return _states(cell, params, x_TBI, s0, alphas), batch_shape
    return _scan(cell, params, x_TBI, s0, alphas, save_vjp=False).states, batch_shape


def unroll(
    cell: Cell, params, xs: jax.Array, state0=None, scales: Mapping[str, Any] | None = None, backward: str = "custom"
) -> jax.Array:
    """Runs ``cell`` over xs [T, I] or [..., T, I] and returns hs [..., T, H].

    Args:
      cell: a gradpaths cell.
      params: ``cell.init(key, I)``.
      xs: inputs, batch-major [..., T, I].
      state0: the initial state (a single state, or one per batch element); zeros if None.
      scales: ``{edge: alpha}`` gradient scales (forward values unchanged).
      backward: "custom" (default): reverse-mode derivatives use the hand-built reverse
        scan over saved core VJPs (``reverse``) with the parameter gradients contracted
        after the scan; the gradient is that of "autodiff" up to float rounding, and
        faster. "autodiff": plain JAX autodiff of the scan, which also supports
        forward mode (``jax.jvp``, ``jax.jacfwd``); "custom" supports reverse mode only.
    """
    states, batch_shape = _run(cell, params, xs, state0, scales, backward)
    return to_batch_major(cell.output(states), batch_shape)


def unroll_states(cell: Cell, params, xs, state0=None, scales=None, backward: str = "custom"):
    """Like ``unroll`` but returns the full states (e.g. LSTMState) [..., T, H]."""
    states, batch_shape = _run(cell, params, xs, state0, scales, backward)
    return to_batch_major(states, batch_shape)
