"""The forward pass: one ``lax.scan`` over time, with optional per-edge gradient scales.

An edge scale α leaves the forward values unchanged and scales the gradient through
that edge by α (α = 0 is ``stop_gradient``, as in h-detach):

.. math::

    e ← \\mathrm{sg}(e) + α (e - \\mathrm{sg}(e))

α may be a scalar or an array of per-step scales [T] (or [..., T] matching the batch),
which is how random h-detach masks enter.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradpaths.cells import Cell, check_params


class Forward(NamedTuple):
    """What the backward pass needs, stored once in the forward pass (time-major).

    Attributes:
      x_TBI: inputs. u_TBN: x W_x + b. a_TBN: the recurrent pre-activations.
      m_TBH: the matmul edge's input (h_{t-1}). prev: the state s_{t-1} for each t.
      states: s_t for each t.
    """

    x_TBI: jax.Array
    u_TBN: jax.Array
    a_TBN: jax.Array
    m_TBH: jax.Array
    prev: Any
    states: Any


def check_inputs(cell: Cell, params: Any, xs: Any) -> tuple[int, tuple[int, ...], int]:
    """Validates cell, params and xs [..., T, I]; returns (T, batch_shape, I)."""
    input_size = check_params(cell, params)
    shape = getattr(xs, "shape", None)
    if shape is None:
        raise TypeError(f"xs must be an array of shape [..., T, I], got {type(xs).__name__}")
    if len(shape) < 2:
        raise ValueError(f"xs must have shape [T, I] or [..., T, I] (at least 2-D), got shape {tuple(shape)}")
    if shape[-1] != input_size:
        raise ValueError(f"xs has input size {shape[-1]} (last axis) but params expect I={input_size}; xs shape {tuple(shape)}")
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


def forward(cell: Cell, params, xs: jax.Array, state0=None, scales=None) -> tuple[Forward, tuple[int, ...]]:
    """Runs the scan on xs [..., T, I]; returns time-major residuals and the batch shape."""
    n_t, batch_shape, n_i = check_inputs(cell, params, xs)
    scales = check_scales(cell, scales)
    dtype = params["W_x"].dtype
    b = int(np.prod(batch_shape, dtype=int))
    x_TBI = jnp.swapaxes(jnp.asarray(xs, dtype).reshape(b, n_t, n_i), 0, 1)
    s0 = cell.zero_state((), dtype) if state0 is None else state0
    s0 = _batch_first(jax.tree.map(lambda s: jnp.asarray(s, dtype), s0), batch_shape, b)
    alphas = {k: _per_step(jnp.asarray(v, dtype), n_t, batch_shape, b) for k, v in scales.items()}

    u_TBN = x_TBI @ params["W_x"] + params["b"]

    def step(s, inp):
        u, alpha = inp
        e = cell.read(s)
        e = {k: _scale_grad(v, alpha[k]) if k in alpha else v for k, v in e.items()}
        m = e[cell.matmul_edge]
        a = cell.recurrent(params, m)
        new = cell.core(u, a, e)
        return new, (a, m, s, new)

    _, (a_TBN, m_TBH, prev, states) = jax.lax.scan(step, s0, (u_TBN, alphas))
    return Forward(x_TBI, u_TBN, a_TBN, m_TBH, prev, states), batch_shape


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


def unroll(cell: Cell, params, xs: jax.Array, state0=None, scales: Mapping[str, Any] | None = None) -> jax.Array:
    """Runs ``cell`` over xs [T, I] or [..., T, I] and returns hs [..., T, H].

    Args:
      cell: a gradpaths cell.
      params: ``cell.init(key, I)``.
      xs: inputs, batch-major [..., T, I].
      state0: the initial state (a single state, or one per batch element); zeros if None.
      scales: ``{edge: alpha}`` gradient scales (forward values unchanged).
    """
    fwd, batch_shape = forward(cell, params, xs, state0, scales)
    return to_batch_major(cell.output(fwd.states), batch_shape)


def unroll_states(cell: Cell, params, xs, state0=None, scales=None):
    """Like ``unroll`` but returns the full states (e.g. LSTMState) [..., T, H]."""
    fwd, batch_shape = forward(cell, params, xs, state0, scales)
    return to_batch_major(fwd.states, batch_shape)
