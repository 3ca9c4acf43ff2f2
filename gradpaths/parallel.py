"""Parallel (associative-scan) forward passes for linear highway-only cells.

A cell whose carried state obeys a linear recurrence with input-only coefficients,

.. math::

    z_t = a_t \\cdot z_{t-1} + b_t,\\qquad (a_t, b_t) = \\mathrm{coefficients}_θ(x_t),\\qquad
    s_t = \\mathrm{finish}_θ(z_t, x_t),

can be unrolled in O(log T) depth: the affine maps z ↦ a·z + b compose associatively,

.. math::

    (a_2, b_2) ∘ (a_1, b_1) = (a_2 \\cdot a_1,\\; a_2 \\cdot b_1 + b_2),

so ``jax.lax.associative_scan`` gives every prefix composition, and z_t is the t-th
prefix applied to z_0 (folded into b_1: b_1 ← a_1 · z_0 + b_1).

**The parallel protocol** (optional, on top of the cell protocol):

``coefficients(params, x) -> (a, b)``
    for one example and one step, x [I]. ``b`` is a pytree shaped like ``read(state)``
    (the dict {edge: value}); ``a`` is whatever ``mul`` takes.
``mul(a, z) -> a · z``
    the action of a coefficient on z, and also the composition of two coefficients:
    ``mul(a2, mul(a1, z)) == mul(mul(a2, a1), z)``. For one step (vmap adds the axes).
    Elementwise for minGRU, minLSTM, RG-LRU and S6 (``jax.tree.map(jnp.multiply, a, z)``);
    the complex product on [re, im] halves for the LRU.
``finish(params, z, x) -> state``
    s_t from the carried part z_t and x_t, with ``read(finish(params, z, x)) == z``.

and ``step(params, e, x) == finish(params, mul(a, e) + b, x)``. Subclassing
``gradpaths.cells.gated_linear.LinearRecurrence`` gives that ``step`` and the
elementwise ``mul``: a new cell writes ``coefficients`` and ``finish`` only.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

PROTOCOL = ("coefficients", "mul", "finish")


def check_parallel(cell: Any) -> None:
    """Raises TypeError unless ``cell`` has the parallel protocol's members."""
    missing = [m for m in (*PROTOCOL, "read", "zero_state", "output") if not callable(getattr(cell, m, None))]
    if missing:
        raise TypeError(
            f"{type(cell).__name__} has no parallel form: it lacks {missing} (the parallel protocol is "
            f"coefficients(params, x) -> (a, b), mul(a, z) and finish(params, z, x); see gradpaths.parallel)"
        )


def _check_xs(xs: Any) -> tuple[int, tuple[int, ...], int]:
    shape = getattr(xs, "shape", None)
    if shape is None:
        raise TypeError(f"xs must be an array of shape [..., T, I], got {type(xs).__name__}")
    if len(shape) < 2 or shape[-2] < 1:
        raise ValueError(f"xs must have shape [T, I] or [..., T, I] with T >= 1, got shape {tuple(shape)}")
    return shape[-2], tuple(shape[:-2]), shape[-1]


def _batched_state0(cell: Any, state0: Any, batch_shape: tuple[int, ...], dtype) -> Any:
    """state0 as leaves [B, ...]: zeros, one state broadcast, or one per batch element."""
    b = math.prod(batch_shape)
    single = cell.zero_state((), dtype)
    if state0 is None:
        return cell.zero_state((b,), dtype)
    if jax.tree.structure(state0) != jax.tree.structure(single):
        raise ValueError(f"state0 must be structured like zero_state ({jax.tree.structure(single)})")

    def one(v, ref):
        v = jnp.asarray(v)
        if v.shape == ref.shape:
            return jnp.broadcast_to(v, (b, *ref.shape))
        if v.shape == (*batch_shape, *ref.shape):
            return v.reshape(b, *ref.shape)
        raise ValueError(f"state0 leaf has shape {v.shape}; want {ref.shape} or {(*batch_shape, *ref.shape)}")

    return jax.tree.map(one, state0, single)


def _combine(cell: Any):
    def one(e1, e2):
        (a1, b1), (a2, b2) = e1, e2
        return cell.mul(a2, a1), jax.tree.map(jnp.add, cell.mul(a2, b1), b2)

    return jax.vmap(one)


def _states_one(cell: Any, params: Any, x_TI: jax.Array, s0: Any) -> Any:
    """States [T, ...] of one sequence x_TI [T, I] from s0."""
    a, b = jax.vmap(cell.coefficients, (None, 0))(params, x_TI)
    first = lambda t: jax.tree.map(lambda v: v[0], t)
    b1 = jax.tree.map(jnp.add, cell.mul(first(a), cell.read(s0)), first(b))
    b = jax.tree.map(lambda v, v1: v.at[0].set(v1), b, b1)
    _, z = jax.lax.associative_scan(_combine(cell), (a, b))
    return jax.vmap(cell.finish, (None, 0, 0))(params, z, x_TI)


def parallel_states(cell: Any, params: Any, xs: jax.Array, state0: Any = None) -> Any:
    """The states s_t [..., T, ...] by an associative scan; equals ``gp.unroll_states``.

    Args:
      cell: a cell with the parallel protocol (``mingru``, ``minlstm``, ``lru``, ...).
      params: ``cell.init(key, I)``.
      xs: inputs [T, I] or [..., T, I].
      state0: the initial state (one state, or one per batch element); zeros if None.
    """
    check_parallel(cell)
    n_t, batch_shape, n_i = _check_xs(xs)
    x_BTI = jnp.reshape(xs, (-1, n_t, n_i))
    s0 = _batched_state0(cell, state0, batch_shape, xs.dtype)
    states = jax.vmap(lambda x, s: _states_one(cell, params, x, s))(x_BTI, s0)
    return jax.tree.map(lambda v: v.reshape(*batch_shape, *v.shape[1:]), states)


def parallel_unroll(cell: Any, params: Any, xs: jax.Array, state0: Any = None) -> jax.Array:
    """hs [..., T, H] by an associative scan (O(log T) depth); equals ``gp.unroll``.

    Args: as ``parallel_states``.

    Example::

        cell = gp.mingru(64)
        params = cell.init(jax.random.key(0), 8)
        hs = parallel_unroll(cell, params, xs)          # xs [B, T, 8] -> hs [B, T, 64]
    """
    states = parallel_states(cell, params, xs, state0)
    lead = len(xs.shape) - 1
    out = cell.output
    for _ in range(lead):
        out = jax.vmap(out)
    return out(states)
