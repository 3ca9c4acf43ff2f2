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

**Stabilised cells** (optional members on top; xLSTM's mLSTM). The carried part holds a
stabiliser m beside the linear memory, and the coefficients depend on it:

.. math::

    m_t = \\max(p_t + m_{t-1},\\; r_t),\\qquad
    z_t = a_t \\cdot z_{t-1} + b_t,\\quad (a_t, b_t) = \\mathrm{coefficients}_θ(x_t, μ_t),
    \\quad μ_t = (m_{t-1}, m_t).

m is not linear, but it is linear in the max-plus (tropical) semiring: the maps
m ↦ max(m + p, r) compose associatively,

.. math::

    (p_2, r_2) ∘ (p_1, r_1) = (p_1 + p_2,\\; \\max(r_1 + p_2,\\, r_2)),

so one associative scan (``max_plus_scan``; p_t = −∞ restarts m_t at r_t) gives every
m_t from m_0, and then the coefficients are known and a second scan gives z_t. Members:

``stabiliser(params, z0, xs) -> μ``
    for ONE sequence xs [T, I] from z0 = ``read(s_0)``: a pytree μ with leading axis [T],
    whose slice μ_t ``coefficients(params, x, μ_t)`` takes (the mLSTM's (m_{t-1}, m_t)).
``jacobian(params, e, x) -> J``
    ∂z_t/∂e_t = ∂read(step(params, e, x))/∂e at the actual e_t, as a coefficient ``mul``
    acts on (``mul(J, z)``) and composes (``mul(J2, J1)``). The reverse pass needs it:
    for a linear cell it is a_t (the default when ``jacobian`` is absent), but m_{t-1} also
    reaches z_t through the max and through (a_t, b_t), so a stabilised cell's Jacobian is
    not a_t and the cell must give it.

and, along any sequence, ``read(step(params, e_t, x_t)) == mul(a_t, e_t) + b_t`` with
(a_t, b_t) = ``coefficients(params, x_t, μ_t)``.
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
    if _stabilised(cell) and not callable(getattr(cell, "jacobian", None)):
        raise TypeError(
            f"{type(cell).__name__} has a stabiliser but no jacobian(params, e, x): its highway Jacobian is "
            f"not the coefficient a_t, so the reverse pass needs it (see gradpaths.parallel)"
        )


def _stabilised(cell: Any) -> bool:
    return callable(getattr(cell, "stabiliser", None))


def max_plus_scan(p: jax.Array, r: jax.Array, m0: jax.Array) -> jax.Array:
    """m_t = max(p_t + m_{t-1}, r_t) for t = 1..T from m_0, by one associative scan.

    The maps m ↦ max(m + p, r) compose as (p_2, r_2) ∘ (p_1, r_1) = (p_1 + p_2,
    max(r_1 + p_2, r_2)); m_0 is folded into the first map (r_1 ← max(p_1 + m_0, r_1)).
    p_t = −∞ restarts the recurrence: m_t = r_t.

    Args:
      p, r: [T, ...], the max-plus coefficients of each step (p may hold −∞).
      m0: [...], the initial value (may be −∞).

    Returns:
      m [T, ...].
    """
    r = r.at[0].set(jnp.maximum(p[0] + m0, r[0]))

    def combine(e1, e2):
        (p1, r1), (p2, r2) = e1, e2
        return p1 + p2, jnp.maximum(r1 + p2, r2)

    return jax.lax.associative_scan(combine, (p, r))[1]


def _coefficients_T(cell: Any, params: Any, x_TI: jax.Array, z0: Any) -> tuple[Any, Any]:
    """(a, b) of every step of one sequence x_TI [T, I]; a stabilised cell scans μ first."""
    if _stabilised(cell):
        mu = cell.stabiliser(params, z0, x_TI)
        return jax.vmap(cell.coefficients, (None, 0, 0))(params, x_TI, mu)
    return jax.vmap(cell.coefficients, (None, 0))(params, x_TI)


def _jacobian(cell: Any, params: Any, e: Any, x: jax.Array) -> Any:
    """∂z_t/∂e_t for one step: ``cell.jacobian``, or a_t for a linear cell."""
    if callable(getattr(cell, "jacobian", None)):
        return cell.jacobian(params, e, x)
    return cell.coefficients(params, x)[0]


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
    z0 = cell.read(s0)
    a, b = _coefficients_T(cell, params, x_TI, z0)
    first = lambda t: jax.tree.map(lambda v: v[0], t)
    b1 = jax.tree.map(jnp.add, cell.mul(first(a), z0), first(b))
    b = jax.tree.map(lambda v, v1: v.at[0].set(v1), b, b1)
    _, z = jax.lax.associative_scan(_combine(cell), (a, b))
    return jax.vmap(cell.finish, (None, 0, 0))(params, z, x_TI)


def parallel_states(cell: Any, params: Any, xs: jax.Array, state0: Any = None) -> Any:
    """The states s_t [..., T, ...] by an associative scan; equals ``gp.unroll_states``.

    Args:
      cell: a cell with the parallel protocol (``mingru``, ``minlstm``, ``lru``, ``rglru``, ``s6``, ``mlstm``).
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


# --- the decomposition in parallel form --------------------------------------------------------
#
# With λ_t = ∂L/∂s_t and ν_t its part on the carried z_t (ν_t = ∂finish/∂zᵀ λ_t), the reverse
# pass of a linear cell is itself a linear recurrence in ν, with the transposed coefficients:
#
#     ν_t = c_t + a_{t+1}ᵀ · ν_{t+1},   c_t = ∂finish/∂zᵀ (∂h_t/∂s_t)ᵀ ∂L/∂h_t,
#     λ_t = (∂h_t/∂s_t)ᵀ ∂L/∂h_t + readᵀ(a_{t+1}ᵀ · ν_{t+1})
#
# (using read(finish(z)) = z). For a stabilised cell a_{t+1} is replaced by its Jacobian
# J_{t+1} = ∂z_{t+1}/∂z_t (``jacobian``), which also carries m_t's paths through the max and
# through the coefficients; everything below holds with J in place of a. Transposed maps
# compose associatively as (A2, c2) ∘ (A1, c1) = (mul(A1, A2), A2ᵀ·c1 + c2), so the total is
# a reverse associative scan. By distance: ν^(0) = c and ν^(d)_t = a_{t+1}ᵀ · ν^(d-1)_{t+1}:
# one elementwise shift per distance, parallel over t (depth D, not T); the tail bucket d ≥ D
# is the reverse scan driven by ν^(D). Each bucket's G_d is one VJP of the step in θ, summed
# over (batch, t).


def _bt(f):
    """f for one (example, step), mapped over leading [B, T] axes."""
    return jax.vmap(jax.vmap(f))


def _mul_t(cell: Any, a: Any, v: Any) -> Any:
    """aᵀ · v: the transpose of z ↦ mul(a, z) (linear in z), for one step."""
    return jax.vjp(lambda z: cell.mul(a, z), v)[1](v)[0]


def _shift_up(tree: Any) -> Any:
    """v_{t+1} at index t, zero at t = T-1 (axis 1 is T)."""
    return jax.tree.map(lambda v: jnp.concatenate([v[:, 1:], jnp.zeros_like(v[:, :1])], axis=1), tree)


def _reverse_linear(cell: Any, a_next: Any, c: Any) -> Any:
    """ν_t = c_t + a_nextᵀ_t · ν_{t+1} (ν_T = 0) for [B, T] leaves, by an associative scan."""

    def one(e1, e2):
        (a1, c1), (a2, c2) = e1, e2
        return cell.mul(a1, a2), jax.tree.map(jnp.add, _mul_t(cell, a2, c1), c2)

    flip = lambda t: jax.tree.map(lambda v: jnp.flip(v, 0), t)

    def seq(a_T, c_T):
        _, nu = jax.lax.associative_scan(jax.vmap(one), (flip(a_T), flip(c_T)))
        return flip(nu)

    return jax.vmap(seq)(a_next, c)


def parallel_decompose(
    cell: Any,
    params: Any,
    xs: jax.Array,
    loss_fn: Any,
    *,
    max_hops: int = 8,
    parts: Any = ("step", "distance", "hops", "state"),
    state0: Any = None,
    max_distance: int | None = None,
):
    """``gp.decompose`` for a cell with the parallel protocol, in parallel form.

    The forward pass and the total reverse pass are associative scans (depth O(log T));
    ``by_distance`` takes one parallel elementwise shift per distance (depth D). A
    highway-only cell has no hop edges, so ``by_hops`` is [total, 0, ..., 0] and
    ``state_grads`` is all in class 0. Same arguments, semantics and result type as
    ``gp.decompose`` (``hop_edges`` aside: such a cell has none); every part sums to the
    total, and the total equals ``jax.grad``.

    Args:
      cell, params, xs, loss_fn, state0: as ``gp.decompose``; xs [T, I] or [..., T, I].
      max_hops: K, the number of (empty) hop classes after class 0.
      parts: any of "step", "distance", "hops", "state".
      max_distance: D; distances 0..D-1 exact, bucket D collects d ≥ D (O(T·D) work). None: all.
    """
    from gradpaths.decompose import Decomposition

    check_parallel(cell)
    unknown = set(parts) - {"step", "distance", "hops", "state"}
    if unknown:
        raise ValueError(
            f"parallel_decompose computes parts 'step', 'distance', 'hops', 'state'; got {sorted(unknown)}"
        )
    for name, v in (("max_hops", max_hops), ("max_distance", 1 if max_distance is None else max_distance)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "max_hops" else 1):
            raise ValueError(f"{name} must be an int >= {0 if name == 'max_hops' else 1}, got {v!r}")
    n_t, batch_shape, n_i = _check_xs(xs)
    x = jnp.reshape(xs, (-1, n_t, n_i))
    s0 = _batched_state0(cell, state0, batch_shape, xs.dtype)
    states = jax.vmap(lambda xb, sb: _states_one(cell, params, xb, sb))(x, s0)
    prev = jax.tree.map(lambda v, v0: jnp.concatenate([v0[:, None], v[:, :-1]], axis=1), states, s0)
    e = _bt(cell.read)(prev)

    hs, out_vjp = jax.vjp(_bt(cell.output), states)
    loss, dhs = jax.value_and_grad(loss_fn)(hs.reshape(*batch_shape, *hs.shape[1:]))
    (lam_direct,) = out_vjp(dhs.reshape(hs.shape).astype(hs.dtype))
    _, read_vjp = jax.vjp(_bt(cell.read), states)
    read_t = lambda nu: read_vjp(nu)[0]
    _, fin_vjp = jax.vjp(lambda z: _bt(lambda zz, xx: cell.finish(params, zz, xx))(z, x), _bt(cell.read)(states))
    (c,) = fin_vjp(lam_direct)
    a = _bt(lambda ee, xx: _jacobian(cell, params, ee, xx))(e, x)  # J_t = ∂z_t/∂z_{t-1} (a_t if linear)
    a_next = jax.tree.map(lambda v: jnp.concatenate([v[:, 1:], v[:, -1:]], axis=1), a)  # J_{t+1}; last unused
    shift = lambda nu: _bt(lambda aa, vv: _mul_t(cell, aa, vv))(a_next, _shift_up(nu))  # J_{t+1}ᵀ · ν_{t+1}

    _, theta_vjp = jax.vjp(lambda p: _bt(lambda ee, xx: cell.step(p, ee, xx))(e, x), params)
    grad_of = lambda lam: theta_vjp(lam)[0]
    add = lambda u, v: jax.tree.map(jnp.add, u, v)

    want = set(parts)
    res: dict[str, Any] = {}
    nu = _reverse_linear(cell, a_next, c)
    lam = add(lam_direct, read_t(shift(nu)))
    res["total"] = grad_of(lam)
    if "distance" in want:
        tail = max_distance is not None and max_distance < n_t - 1
        n_d = max_distance if tail else n_t

        def body(nu_d, _):
            nu_next = shift(nu_d)
            return nu_next, grad_of(read_t(nu_next))

        nu_last, g_rest = jax.lax.scan(body, c, None, length=n_d - 1)
        buckets = [jax.tree.map(lambda v: v[None], grad_of(lam_direct)), g_rest]
        if tail:  # ν^tail_t = a_{t+1}ᵀ·(ν^tail_{t+1} + ν^(D-1)_{t+1}): a reverse scan driven by ν^(D)
            g_tail = grad_of(read_t(_reverse_linear(cell, a_next, shift(nu_last))))
            buckets.append(jax.tree.map(lambda v: v[None], g_tail))
        res["by_distance"] = jax.tree.map(lambda *v: jnp.concatenate(v, 0), *buckets)
    if "hops" in want:
        res["by_hops"] = jax.tree.map(
            lambda g: jnp.concatenate([g[None], jnp.zeros((max_hops, *g.shape), g.dtype)]), res["total"]
        )
    if "step" in want:
        p_T = jax.tree.map(lambda v: jnp.broadcast_to(v, (n_t, *v.shape)), params)
        step_T = lambda pp: jax.vmap(jax.vmap(cell.step), (None, 0, 0))(pp, e, x)
        res["by_step"] = jax.vjp(step_T, p_T)[1](lam)[0]
    if "state" in want:

        def classes(v):  # [B, T, ...] -> [T, K+1, *batch, ...], all in class 0
            v = jnp.moveaxis(v, 1, 0).reshape(n_t, 1, *batch_shape, *v.shape[2:])
            return jnp.concatenate([v, jnp.zeros((n_t, max_hops, *v.shape[2:]), v.dtype)], axis=1)

        res["state_grads"] = jax.tree.map(classes, lam)
    finite = jnp.isfinite(loss)
    for leaf in jax.tree.leaves(res):
        finite = finite & jnp.all(jnp.isfinite(leaf))
    return Decomposition(loss=loss, finite=finite, **res)
