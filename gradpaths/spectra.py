"""Per-edge Jacobians, Lyapunov exponents and decay-rate fits along a trajectory.

A state for one example (``LSTMState(h, c)``, ``HState(h)``) is flattened with
``jax.flatten_util.ravel_pytree``: the LSTM state becomes [h; c] (S = 2H), the
others [h] (S = H). With s_t = F(e_t, x_t) and e_t = read(s_{t-1}) holding one copy
of s_{t-1} per edge, the Jacobian restricted to edge k is

.. math::

    J_{k,t} = \\frac{∂F_t}{∂e_k}\\,\\frac{∂\\,\\mathrm{read}_k}{∂s_{t-1}} \\in ℝ^{S×S},
    \\qquad Σ_k J_{k,t} = \\frac{∂s_t}{∂s_{t-1}}.

For the LSTM the ``highway`` Jacobian has c→c block diag(f_t), c→h block
diag(o_t ⊙ tanh'(c_t) ⊙ f_t) and zero h columns; the ``gates`` Jacobian has zero c
columns. For the tanh RNN, J_recurrent = diag(1 - h_t²) W_hᵀ.

Lyapunov exponents (QR method): with Q_0 orthonormal [S, k],
J_t Q_{t-1} = Q_t R_t and λ_i = (1/T) Σ_t log |(R_t)_{ii}|, returned in descending order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gradpaths import _linalg
from gradpaths.unroll import check_inputs, param_dtype, unroll_states


def _check_edges(cell, edges: Any) -> tuple[str, ...]:
    if edges is None:
        return tuple(cell.edges)
    if isinstance(edges, str) or not isinstance(edges, Sequence):
        raise TypeError(f"edges must be a tuple of edge names from {cell.edges}, got {edges!r}")
    unknown = [e for e in edges if e not in cell.edges]
    if unknown or not edges:
        raise ValueError(f"edges must be a non-empty subset of {cell.edges}, got {tuple(edges)}")
    return tuple(edges)


def _per_sequence(fn: Callable, xs, state0):
    """Applies fn(xs [T, I], state0) to each sequence of xs [..., T, I] via vmap.

    state0 is one state shared by the batch, or one per batch element (same leading axes).
    """
    if xs.ndim == 2:
        return fn(xs, state0)
    s_axis = None
    if state0 is not None and any(leaf.ndim > 1 for leaf in jax.tree.leaves(state0)):
        s_axis = 0
    return jax.vmap(lambda x, s: _per_sequence(fn, x, s), in_axes=(0, s_axis))(xs, state0)


def _trajectory(cell, params, xs, state0):
    """The previous states s_{t-1} (flattened [T, S]) of one sequence xs [T, I], and the unravel."""
    dtype = param_dtype(params)
    s0 = cell.zero_state((), dtype) if state0 is None else jax.tree.map(lambda v: jnp.asarray(v, dtype), state0)
    states = unroll_states(cell, params, xs, s0)
    flat0, unravel = ravel_pytree(s0)
    flat_TS = jax.vmap(lambda s: ravel_pytree(s)[0])(states)
    return jnp.concatenate([flat0[None], flat_TS[:-1]]), unravel


def _edge_step(cell, params, edges: tuple[str, ...], unravel) -> Callable:
    """(x_t, s_{t-1}, s) ↦ F with the copies on ``edges`` read from s and the others from s_{t-1}.

    Its derivative in s at s = s_{t-1} is Σ_{k ∈ edges} J_{k,t} (all flattened).
    """

    def f(x, prev_S, s_S):
        fixed, free = cell.read(unravel(prev_S)), cell.read(unravel(s_S))
        e = {k: (free[k] if k in edges else v) for k, v in fixed.items()}
        return ravel_pytree(cell.step(params, e, x))[0]

    return f


def edge_jacobians(cell, params, xs: jax.Array, *, state0=None) -> dict[str, jax.Array]:
    """The per-step Jacobian of each edge class along the trajectory of ``xs``.

    Args:
      cell, params: the cell and its parameters.
      xs: inputs [T, I] (or [..., T, I]: each sequence separately, via vmap).
      state0: the initial state (zeros if None).

    Returns:
      ``{edge: J [..., T, S, S]}`` with J[t] = ∂s_t/∂s_{t-1} through that edge only, on the
      flattened state (LSTM: [h; c]). The edges' Jacobians sum to the full ∂s_t/∂s_{t-1}.
    """
    check_inputs(cell, params, xs)

    def one(x, s0):
        prev_TS, unravel = _trajectory(cell, params, x, s0)
        x = jnp.asarray(x, prev_TS.dtype)
        out = {}
        for k in cell.edges:
            f = _edge_step(cell, params, (k,), unravel)
            out[k] = jax.vmap(lambda u, p, f=f: jax.jacfwd(lambda s: f(u, p, s))(p))(x, prev_TS)
        return out

    return _per_sequence(one, xs, state0)


def lyapunov_exponents(
    cell,
    params,
    xs: jax.Array,
    k: int,
    *,
    state0=None,
    edges: Sequence[str] | None = None,
    key: jax.Array | None = None,
    burn_in: int = 0,
) -> jax.Array:
    """The k leading per-step Lyapunov exponents of Π_t J_t along the trajectory, by QR.

    .. math::

        J_t Q_{t-1} = Q_t R_t,\\qquad λ_i = \\frac{1}{T - T_0} Σ_{t ≥ T_0} \\log |(R_t)_{ii}|

    J_t = Σ_{k ∈ edges} J_{k,t} is applied as a JVP of the edge-restricted step (never
    materialised). A direction the product annihilates gives -inf.

    Args:
      cell, params: the cell and its parameters.
      xs: inputs [T, I] or [..., T, I].
      k: how many exponents (1 ≤ k ≤ S, the flattened state size).
      state0: the initial state (zeros if None).
      edges: the edges followed (default: all, the full state Jacobian); e.g. ("highway",).
      key: PRNG key for the random orthonormal Q_0 (default ``jax.random.key(0)``).
      burn_in: T_0, the number of initial steps left out of the average.

    Returns:
      [..., k] exponents in nats per step, descending.
    """
    n_t, _, _ = check_inputs(cell, params, xs)
    edges = _check_edges(cell, edges)
    n_s = ravel_pytree(cell.zero_state((), param_dtype(params)))[0].shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_s:
        raise ValueError(f"k must be an int in [1, S={n_s}] (the flattened state size), got {k!r}")
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or not 0 <= burn_in < n_t:
        raise ValueError(f"burn_in must be an int in [0, T={n_t}), got {burn_in!r}")
    key = jax.random.key(0) if key is None else key

    def one(x, s0):
        prev_TS, unravel = _trajectory(cell, params, x, s0)
        x = jnp.asarray(x, prev_TS.dtype)
        f = _edge_step(cell, params, edges, unravel)
        q0, _ = _linalg.qr(jax.random.normal(key, (n_s, k), prev_TS.dtype))

        def body(q, inp):
            u, p = inp
            _, jvp = jax.linearize(lambda s: f(u, p, s), p)
            v = jax.vmap(jvp, in_axes=1, out_axes=1)(q)
            if k == 1:  # QR of one column is a normalisation
                nv = jnp.linalg.norm(v[:, 0])
                return v / nv, jnp.log(nv)[None]
            q, r = _linalg.qr(v)
            return q, jnp.log(jnp.abs(jnp.diagonal(r)))

        _, logs_TK = jax.lax.scan(body, q0, (x, prev_TS))
        return -jnp.sort(-logs_TK[burn_in:].mean(0))

    return _per_sequence(one, xs, state0)


class DecayFit(NamedTuple):
    """Least-squares fit log y = intercept + rate · d.

    Attributes:
      rate: nats per step (negative: decay). intercept: log y at d = 0.
      r2: coefficient of determination. n: points used (nan fit if < 2).
    """

    rate: jax.Array
    intercept: jax.Array
    r2: jax.Array
    n: jax.Array


def fit_decay_rate(norms, distances=None, *, d_min: float = 0, d_max: float | None = None, floor: float = 0.0):
    """Fits the per-step rate of log ‖G_d‖ against d, ignoring zeros and non-finite values.

    Args:
      norms: [..., D] values ‖G_d‖ (fitted along the last axis; leading axes batch).
      distances: [D] distances (default 0..D-1).
      d_min, d_max: fit only d_min ≤ d ≤ d_max.
      floor: also ignore values ≤ floor (e.g. the float underflow range).

    Returns:
      A ``DecayFit`` with leading axes like ``norms``.
    """
    y = jnp.asarray(norms)
    if y.ndim < 1:
        raise ValueError(f"norms must have at least one axis [..., D], got shape {y.shape}")
    d = jnp.arange(y.shape[-1], dtype=y.dtype) if distances is None else jnp.asarray(distances, y.dtype)
    if d.shape != y.shape[-1:]:
        raise ValueError(f"distances must have shape [D]={y.shape[-1:]}, got {d.shape}")
    return _fit(y, d, d_min, jnp.inf if d_max is None else d_max, floor)


@jax.jit
def _fit(y, d, d_min, d_max, floor) -> DecayFit:
    w = (y > floor) & jnp.isfinite(y) & (d >= d_min) & (d <= d_max)
    logy = jnp.where(w, jnp.log(jnp.where(w, y, 1.0)), 0.0)
    n = w.sum(-1)
    nn = jnp.maximum(n, 1).astype(y.dtype)
    dm = jnp.where(w, d, 0.0).sum(-1) / nn
    ym = logy.sum(-1) / nn
    dd = jnp.where(w, d - dm[..., None], 0.0)
    yy = jnp.where(w, logy - ym[..., None], 0.0)
    sxx, sxy, syy = (dd * dd).sum(-1), (dd * yy).sum(-1), (yy * yy).sum(-1)
    ok = (n >= 2) & (sxx > 0)
    rate = jnp.where(ok, sxy / jnp.where(ok, sxx, 1.0), jnp.nan)
    r2 = jnp.where(ok & (syy > 0), sxy**2 / jnp.where(ok, sxx, 1.0) / jnp.where(syy > 0, syy, 1.0), jnp.nan)
    return DecayFit(rate, ym - rate * dm, r2, n)
