"""The forward pass: one ``lax.scan`` over time, with optional per-edge gradient scales.

Any protocol cell (``cells.protocol.CellProtocol``) runs through the generic scan,
s_t = F_θ(read(s_{t-1}), x_t), vmapped over the batch. The library's affine cells
(``is_affine``) also have a scan that saves the VJP of their elementwise core at every
step, for the fast reverse scan of ``engine.py``.

An edge scale α leaves the forward values unchanged and scales the gradient through
that edge by α (α = 0 is ``stop_gradient``, as in h-detach):

.. math::

    e ← \\mathrm{sg}(e) + α (e - \\mathrm{sg}(e))

α may be a scalar or an array of per-step scales [T] (or [..., T] matching the batch),
which is how random h-detach masks enter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradpaths.cells.classic import GRU, LSTM, MGU, RNN, check_params

_AFFINE = (RNN, LSTM, GRU, MGU)
_MEMBERS = ("init", "zero_state", "read", "step", "output")


def is_affine(cell: Any) -> bool:
    """Whether the fast reverse scan applies: the library's own affine cells, by exact type.

    A subclass (which could change ``core`` or a structural flag) takes the generic path,
    so no declared attribute can change a gradient silently.
    """
    return type(cell) in _AFFINE


def check_cell_members(cell: Any) -> None:
    """Raises TypeError/ValueError unless ``cell`` has the protocol's members."""
    missing = [m for m in (*_MEMBERS, "edges", "hop_edges") if not hasattr(cell, m)]
    if missing:
        raise TypeError(
            f"a cell needs edges, hop_edges, init, zero_state, read, step and output; "
            f"{type(cell).__name__} lacks {missing}"
        )
    edges, hops = cell.edges, cell.hop_edges
    for name, names in (("edges", edges), ("hop_edges", hops)):
        if not isinstance(names, tuple) or not all(isinstance(e, str) for e in names):
            raise TypeError(f"cell.{name} must be a tuple of str, got {names!r}")
    if not edges or len(set(edges)) != len(edges):
        raise ValueError(f"cell.edges must be non-empty and unique, got {edges!r}")
    check_hop_edges(cell, hops)


def check_hop_edges(cell: Any, hop_edges: Any) -> tuple[str, ...]:
    """``hop_edges`` as a tuple of names from ``cell.edges``."""
    if isinstance(hop_edges, str) or not isinstance(hop_edges, (tuple, list)):
        raise TypeError(f"hop_edges must be a tuple of edge names from {cell.edges}, got {hop_edges!r}")
    unknown = [e for e in hop_edges if e not in cell.edges]
    if unknown:
        raise ValueError(f"hop_edges {unknown} are not edges of {type(cell).__name__}; its edges are {cell.edges}")
    return tuple(hop_edges)


def param_dtype(params: Any):
    """The floating dtype the parameters share (the state and inputs take it)."""
    leaves = [jnp.asarray(v) for v in jax.tree.leaves(params)]
    floats = {v.dtype for v in leaves if jnp.issubdtype(v.dtype, jnp.floating)}
    if len(floats) != 1:
        raise TypeError(f"params must share one floating dtype, got {sorted(map(str, floats)) or 'none'}")
    return floats.pop()


class Forward(NamedTuple):
    """What the reverse scans need, stored once in the forward pass (time-major).

    Attributes:
      x_TBI: inputs. states: s_t for each t [T, B, ...]. prev: s_{t-1} for each t.
      u_TBN, m_TBH, core_vjp: affine cells only (else None): x W_x + b, the matmul edge's
      input (h_{t-1}), and the VJP of the elementwise core at every step, its residuals
      stacked over t, so the fast reverse scan recomputes no forward value.
    """

    x_TBI: jax.Array
    states: Any
    prev: Any
    u_TBN: jax.Array | None = None
    m_TBH: jax.Array | None = None
    core_vjp: Any = None


def check_inputs(cell: Any, params: Any, xs: Any) -> tuple[int, tuple[int, ...], int]:
    """Validates cell, params and xs [..., T, I]; returns (T, batch_shape, I)."""
    check_cell_members(cell)
    shape = getattr(xs, "shape", None)
    if shape is None:
        raise TypeError(f"xs must be an array of shape [..., T, I], got {type(xs).__name__}")
    if len(shape) < 2:
        raise ValueError(f"xs must have shape [T, I] or [..., T, I] (at least 2-D), got shape {tuple(shape)}")
    if shape[-2] < 1:
        raise ValueError(f"xs must have at least one time step, got shape {tuple(shape)}")
    if is_affine(cell):
        input_size = check_params(cell, params)
        if shape[-1] != input_size:
            raise ValueError(
                f"xs has input size {shape[-1]} (last axis) but params expect I={input_size}; xs shape {tuple(shape)}"
            )
    else:
        check_step(cell, params, shape[-1])
    return shape[-2], tuple(shape[:-2]), shape[-1]


def check_step(cell: Any, params: Any, input_size: int) -> None:
    """A protocol cell's step must accept x [I] and return a state shaped like zero_state."""
    dtype = param_dtype(params)
    s0 = cell.zero_state((), dtype)
    x = jax.ShapeDtypeStruct((input_size,), dtype)
    try:
        new = jax.eval_shape(lambda p, s, x: cell.step(p, cell.read(s), x), params, s0, x)
    except Exception as e:  # a shape error deep inside a user's step: name what was given
        raise ValueError(
            f"{type(cell).__name__}.step failed on params {jax.tree.map(jnp.shape, params)} and x of shape "
            f"[{input_size}] (xs's last axis is I): {type(e).__name__}: {e}"
        ) from e
    want = jax.tree.map(lambda v: (v.shape, v.dtype), s0)
    got = jax.tree.map(lambda v: (v.shape, v.dtype), new)
    if jax.tree.structure(s0) != jax.tree.structure(new) or want != got:
        raise ValueError(f"{type(cell).__name__}.step must return a state like zero_state: {want}, got {got}")


def check_scales(cell: Any, scales: Mapping[str, Any] | None) -> dict[str, Any]:
    if scales is None:
        return {}
    if not isinstance(scales, Mapping):
        raise TypeError(f"scales must be a dict {{edge: alpha}} over edges {cell.edges}, got {type(scales).__name__}")
    unknown = sorted(set(scales) - set(cell.edges))
    if unknown:
        raise ValueError(f"unknown edge(s) {unknown} in scales; {type(cell).__name__} has edges {cell.edges}")
    return dict(scales)


def scale_grad(x: jax.Array, alpha: jax.Array) -> jax.Array:
    sg = jax.lax.stop_gradient(x)
    return sg + alpha * (x - sg)


def _batch_first(cell, state, batch_shape, b: int, dtype):
    """A state (shared, or one per batch element) as leaves [B, *per-example shape]."""
    ref = cell.zero_state((), dtype)
    return jax.tree.map(
        lambda s, r: jnp.broadcast_to(jnp.asarray(s, dtype), (*batch_shape, *r.shape)).reshape(b, *r.shape),
        state,
        ref,
    )


def prepare(cell, params, xs, state0, scales):
    """xs [..., T, I] -> (x_TBI, s0 [B, ...], alphas {edge: [T, B]}, batch_shape)."""
    n_t, batch_shape, n_i = check_inputs(cell, params, xs)
    scales = check_scales(cell, scales)
    dtype = param_dtype(params)
    b = int(np.prod(batch_shape, dtype=int))
    x_TBI = jnp.swapaxes(jnp.asarray(xs, dtype).reshape(b, n_t, n_i), 0, 1)
    s0 = cell.zero_state((), dtype) if state0 is None else state0
    s0 = _batch_first(cell, s0, batch_shape, b, dtype)
    alphas = {k: _per_step(jnp.asarray(v, dtype), n_t, batch_shape, b) for k, v in scales.items()}
    return x_TBI, s0, alphas, batch_shape


def _per_step(alpha: jax.Array, n_t: int, batch_shape, b: int) -> jax.Array:
    """An edge scale as [T, B]: scalar, [T] or [..., T] matching the batch."""
    if alpha.ndim == 0:
        return jnp.broadcast_to(alpha, (n_t, b))
    if alpha.shape[-1] != n_t:
        raise ValueError(f"an edge scale must be a scalar, [T] or [..., T] with T={n_t}, got shape {alpha.shape}")
    return jnp.broadcast_to(alpha, (*batch_shape, n_t)).reshape(b, n_t).T


def shifted(s0, states):
    """s_{t-1} for each t: [s_0, s_1, ..., s_{T-1}]."""
    return jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest[:-1]]), s0, states)


def step_batch(cell, params, s_B, x_B, alpha_B=None):
    """s_t [B, ...] from s_{t-1} [B, ...], x_t [B, I] and edge scales {edge: [B]}."""

    def one(s, x, alpha):
        e = cell.read(s)
        e = {k: jax.tree.map(lambda v, a=alpha[k]: scale_grad(v, a), v) if k in alpha else v for k, v in e.items()}
        return cell.step(params, e, x)

    return jax.vmap(one)(s_B, x_B, {} if alpha_B is None else alpha_B)


def generic_scan(cell, params, x_TBI, s0, alphas) -> Forward:
    """The forward scan of any protocol cell: states [T, B, ...]."""

    def body(s, inp):
        x, alpha = inp
        new = step_batch(cell, params, s, x, alpha)
        return new, new

    _, states = jax.lax.scan(body, s0, (x_TBI, alphas))
    return Forward(x_TBI, states, shifted(s0, states))


def affine_scan(cell, params, x_TBI, s0, alphas, save_vjp: bool) -> Forward:
    """The forward scan of an affine cell; with ``save_vjp`` each step also returns the
    VJP of its elementwise core.

    The loop writes only s_t (and the VJP residuals); u_t, s_{t-1} and m_t are rebuilt
    after it, outside the loop. Inside the loop u_t = x_t W_x + b is one small matmul: on
    XLA:CPU this measured faster than slicing a hoisted u [T, B, G·H], whose dynamic slice
    gets fused into (and slows) every elementwise kernel that reads it.
    """
    mm = cell.matmul_edge

    def body(s, inp):
        x, alpha = inp
        u = x @ params["W_x"] + params["b"]
        e = cell.read(s)
        e = {k: scale_grad(v, alpha[k][:, None]) if k in alpha else v for k, v in e.items()}
        a = cell.recurrent(params, e[mm])
        if save_vjp:
            new, core_vjp = jax.vjp(cell.core, u, a, {k: v for k, v in e.items() if k != mm})
            return new, (new, core_vjp)
        new = cell.core(u, a, e)
        return new, (new, None)

    _, (states, core_vjp) = jax.lax.scan(body, s0, (x_TBI, alphas))
    prev = shifted(s0, states)
    u_TBN = x_TBI @ params["W_x"] + params["b"]
    return Forward(x_TBI, states, prev, u_TBN, cell.read(prev)[mm], core_vjp)


def forward(cell, params, xs, state0=None, scales=None):
    """Runs the forward scan for the reverse scans; returns (Forward, batch_shape)."""
    x_TBI, s0, alphas, batch_shape = prepare(cell, params, xs, state0, scales)
    if is_affine(cell):
        return affine_scan(cell, params, x_TBI, s0, alphas, save_vjp=True), batch_shape
    return generic_scan(cell, params, x_TBI, s0, alphas), batch_shape


def outputs_TB(cell, states):
    """h_t [T, B, H] from states [T, B, ...] (``output`` is written for one example)."""
    return jax.vmap(jax.vmap(cell.output))(states)


def to_batch_major(y_TB, batch_shape):
    """[T, B, ...] -> [..., T, ...] with the original batch axes restored."""
    return jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1).reshape(*batch_shape, *v.shape[:1], *v.shape[2:]), y_TB)


BACKWARDS = ("custom", "autodiff")


def _run(cell, params, xs, state0, scales, backward: str):
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    x_TBI, s0, alphas, batch_shape = prepare(cell, params, xs, state0, scales)
    if not is_affine(cell):
        return generic_scan(cell, params, x_TBI, s0, alphas).states, batch_shape
    if backward == "custom":
        from gradpaths.engine import affine_states  # the fast reverse scan lives in the engine

        return affine_states(cell, params, x_TBI, s0, alphas), batch_shape
    return affine_scan(cell, params, x_TBI, s0, alphas, save_vjp=False).states, batch_shape


def unroll(cell, params, xs: jax.Array, state0=None, scales: Mapping[str, Any] | None = None, backward: str = "custom"):
    """Runs ``cell`` over xs [T, I] or [..., T, I] and returns hs [..., T, H].

    Args:
      cell: any protocol cell (``gp.lstm``, ``gp.stack([...])``, or your own).
      params: ``cell.init(key, I)``.
      xs: inputs, batch-major [..., T, I].
      state0: the initial state (a single state, or one per batch element); zeros if None.
      scales: ``{edge: alpha}`` gradient scales (forward values unchanged).
      backward: for the library's affine cells, "custom" (default) differentiates through
        the hand-built reverse scan over saved core VJPs (reverse mode only, faster);
        "autodiff" is plain JAX autodiff of the scan, which also supports ``jax.jvp``.
        Other cells always use JAX autodiff of the scan.
    """
    states, batch_shape = _run(cell, params, xs, state0, scales, backward)
    return to_batch_major(outputs_TB(cell, states), batch_shape)


def unroll_states(cell, params, xs, state0=None, scales=None, backward: str = "custom"):
    """Like ``unroll`` but returns the full states (e.g. LSTMState) [..., T, ...]."""
    states, batch_shape = _run(cell, params, xs, state0, scales, backward)
    return to_batch_major(states, batch_shape)
