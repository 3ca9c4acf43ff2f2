"""The fast paths (saved core VJPs, the custom VJP of unroll, bucket GEMMs) against plain autodiff."""

import functools

import jax
import jax.numpy as jnp
import pytest
from _trees import rel
from jax.test_util import check_grads

import gradpaths as gp

T, H, I, B = 5, 3, 2, 2
CELLS = {
    "rnn": gp.rnn(H),
    "lstm": gp.lstm(H),
    "lstm_nofg": gp.lstm(H, forget_gate=False),
    "gru": gp.gru(H),
    "mgu": gp.mgu(H),
}
TOL = {"float64": 1e-12, "float32": 1e-5}


def loss(hs):
    return jnp.sum(jnp.sin(2 * hs) ** 2) + jnp.prod(hs[..., -1, :2], axis=-1).sum()


def setup(name, dtype):
    cell = CELLS[name]
    params = jax.jit(cell.init, static_argnums=(1, 2))(jax.random.key(0), I, dtype)
    xs = jax.random.normal(jax.random.key(1), (B, T, I), dtype)
    state0 = jax.tree.map(lambda z: z + 0.3, cell.zero_state((B,), dtype))
    # a per-example, per-step h-detach style mask on every hop edge, and a scalar on the highway
    mask = (jax.random.uniform(jax.random.key(2), (B, T)) > 0.4).astype(dtype)
    scales = {e: mask for e in cell.hop_edges} | {e: 0.6 for e in cell.highway_edges}
    return cell, params, xs, state0, scales


@functools.cache
def grads(name):
    """d/d(params, xs, state0) of loss(unroll) with and without scales, for both backward paths."""
    cell = CELLS[name]

    def f(params, xs, state0, scales, backward):
        g = lambda p, x, s, sc: loss(gp.unroll(cell, p, x, s, sc, backward=backward))
        plain = jax.grad(g, argnums=(0, 1, 2))(params, xs, state0, None)
        masked = jax.grad(g, argnums=(0, 1, 2))(params, xs, state0, scales)
        return plain, masked

    return jax.jit(f, static_argnums=4)


@pytest.mark.parametrize(
    ("name", "dtype"), [(name, "float64") for name in CELLS] + [("lstm", "float32"), ("gru", "float32")]
)
def test_custom_vjp_matches_autodiff(name, dtype):
    cell, params, xs, state0, scales = setup(name, dtype)
    fast = grads(name)(params, xs, state0, scales, "custom")
    ref = grads(name)(params, xs, state0, scales, "autodiff")
    for got, want in zip(fast, ref):
        assert rel(got, want) <= TOL[dtype]
    assert all(v.dtype == jnp.dtype(dtype) for v in jax.tree.leaves(fast))


@pytest.mark.parametrize("name", ["lstm", "mgu"])
def test_decompose_sums_to_autodiff_float64(name):
    cell, params, xs, _, _ = setup(name, "float64")
    ref = jax.grad(lambda p: loss(gp.unroll(cell, p, xs, backward="autodiff")))(params)
    for parts, max_hops in [(("hops", "step"), 4), ((), 2)]:
        d = gp.decompose(cell, params, xs, loss, max_hops=max_hops, parts=parts)
        assert rel(d.total, ref) <= 1e-12, parts
        if d.by_hops is not None:
            assert rel(jax.tree.map(lambda v: v.sum(0), d.by_hops), ref) <= 1e-12
        if d.by_step is not None:
            assert rel(jax.tree.map(lambda v: v.sum(0), d.by_step), ref) <= 1e-12


def test_custom_vjp_second_order_and_cut_edge():
    cell, params, xs, _, _ = setup("rnn", "float64")
    check_grads(lambda p: gp.unroll(cell, p, xs[0]), (params,), order=2, modes=("rev",))
    cell, params, xs, _, _ = setup("lstm", "float64")
    # the gates edge cut at every step (α = 0): the custom path agrees with autodiff exactly
    cut = {"gates": 0.0}
    fast = jax.grad(lambda p: loss(gp.unroll(cell, p, xs, scales=cut)))(params)
    ref = jax.grad(lambda p: loss(gp.unroll(cell, p, xs, scales=cut, backward="autodiff")))(params)
    assert rel(fast, ref) <= 1e-12


def test_forward_mode_needs_autodiff_and_bad_backward_raises():
    cell, params, xs, _, _ = setup("rnn", "float64")
    tangent = jax.tree.map(jnp.ones_like, params)
    _, jvp = jax.jvp(lambda p: gp.unroll(cell, p, xs, backward="autodiff"), (params,), (tangent,))
    _, vjp = jax.vjp(lambda p: gp.unroll(cell, p, xs), params)
    (back,) = vjp(jnp.ones_like(jvp))
    # <1, J t> = <Jᵀ 1, t>: the custom reverse path is the transpose of autodiff's forward mode
    lhs = jnp.sum(jvp)
    rhs = sum(jnp.sum(back[k] * tangent[k]) for k in params)
    assert abs(float(lhs - rhs)) <= 1e-12 * abs(float(lhs))
    with pytest.raises(ValueError, match="backward must be one of"):
        gp.unroll(cell, params, xs, backward="fused")
