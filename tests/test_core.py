"""Core library: cells, unroll, and the exactness of every decomposition."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _trees import flat, rel
from jax.test_util import check_grads
from readme_cell import readme_cell

import gradpaths as gp
from gradpaths.unroll import is_affine

T, H, I, B = 6, 4, 3, 2
# Every registered cell, a few variants, a stack of mixed cells, and the cell the README defines.
CELLS = {name: make(H) for name, make in gp.REGISTRY.items()} | {
    "rnn_relu": gp.rnn(H, activation="relu", recurrent_init="orthogonal"),
    "lstm_nofg": gp.lstm(H, forget_gate=False),
    "stack": gp.stack([gp.lstm(H), gp.gru(H)]),
    "stack_modern": gp.stack([gp.mingru(H), gp.slstm(H)]),
    "readme": readme_cell(H),
}
LOSSES = {
    "last": lambda hs: hs[..., -1, :].sum(),
    "every": lambda hs: (hs * jnp.arange(1, hs.shape[-1] + 1, dtype=hs.dtype)).sum(),
    "nonlinear": lambda hs: jnp.sum(jnp.sin(2 * hs) ** 2) + jnp.prod(hs[..., -1, :2], axis=-1).sum(),
}
TOL = {"float64": 1e-12, "float32": 1e-5}
# The tests that share a cell's compiled bundle run on one xdist worker (--dist loadgroup),
# so each bundle compiles once.
BY_CELL = {n: pytest.param(n, marks=pytest.mark.xdist_group(f"core-{n}")) for n in CELLS}
ALL_PARTS = ("step", "distance", "hops", "state", "distance_hops", "step_hops")


@functools.cache
def setup(name, dtype, batch=(B,), seed=0):
    """The cell, params and xs; init jitted, one compile where eager init compiled each op."""
    cell = CELLS[name]
    params = jax.jit(cell.init, static_argnums=(1, 2))(jax.random.key(seed), I, dtype)
    xs = jax.random.normal(jax.random.key(seed + 1), (*batch, T, I), dtype)
    return cell, params, xs


def mix(hs, w):
    """w weights the three LOSSES, so one compiled function serves all of them."""
    return sum(w[i] * f(hs) for i, f in enumerate(LOSSES.values()))


@functools.cache
def bundle(name, dtype):
    """One jitted call per (cell, dtype): every part (K = T, nothing clamped), jax.grad
    (plain autodiff) and jax.grad through unroll's custom VJP. float64 adds a clamped K = 2
    split and masked_grad with hop scale alpha (autodiff and custom); float32 leaves those
    out, since its compiles are most of this file's time and the identities are float64's."""
    cell = CELLS[name]
    full_check = dtype == "float64"
    custom_vjp = is_affine(cell)  # other cells' "custom" backward is autodiff itself

    def f(params, xs, w, alpha):
        loss = lambda hs: mix(hs, w)
        full = gp.decompose(cell, params, xs, loss, max_hops=T, parts=ALL_PARTS)
        ref = jax.grad(lambda p: loss(gp.unroll(cell, p, xs, backward="autodiff")))(params)
        custom = {"grad": jax.grad(lambda p: loss(gp.unroll(cell, p, xs)))(params)} if custom_vjp else None
        if not full_check:
            return full, None, ref, None, custom
        clamped = gp.decompose(cell, params, xs, loss, max_hops=2, parts=("hops",))
        scales = {e: alpha for e in cell.hop_edges}
        masked = gp.masked_grad(cell, params, xs, loss, scales)
        if custom_vjp:
            custom["masked"] = gp.masked_grad(cell, params, xs, loss, scales, backward="custom")
        return full, clamped, ref, masked, custom

    return jax.jit(f)


def run(name, dtype, loss="nonlinear", alpha=0.5, batch=(B,)):
    cell, params, xs = setup(name, dtype, batch)
    w = jnp.asarray([k == loss for k in LOSSES], dtype)
    return jax.device_get(bundle(name, dtype)(params, xs, w, jnp.asarray(alpha, dtype))[:4])  # checked in numpy


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", [BY_CELL[n] for n, c in CELLS.items() if is_affine(c)])
def test_custom_vjp_matches_autodiff(name, dtype):
    cell, params, xs = setup(name, dtype)
    w = jnp.asarray([1.0, 0.5, 2.0], dtype)
    *_, ref, masked, custom = bundle(name, dtype)(params, xs, w, jnp.asarray(0.3, dtype))
    assert rel(custom["grad"], ref) <= TOL[dtype]
    if masked is not None:
        assert rel(custom["masked"], masked) <= TOL[dtype]


def sums(d):
    leading = lambda t, axes: jax.tree.map(lambda v: v.sum(axes), t)
    return {
        "total": d.total,
        "step": leading(d.by_step, 0),
        "distance": leading(d.by_distance, 0),
        "hops": leading(d.by_hops, 0),
        "distance_hops": leading(d.by_distance_hops, (0, 1)),
        "step_hops": leading(d.by_step_hops, (0, 1)),
    }


def index(tree, i):
    return jax.tree.map(lambda v: v[i], tree)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", BY_CELL.values())
def test_every_part_sums_to_grad(name, dtype):
    for loss in LOSSES:
        d, clamped, ref, _ = run(name, dtype, loss)
        clamped = {} if clamped is None else {"hops (K=2)": sums(clamped)["hops"]}
        for part, value in {**sums(d), **clamped}.items():
            assert rel(value, ref) <= TOL[dtype], (loss, part, rel(value, ref))
        margins = {"step": (d.by_step, 1), "hops": (d.by_hops, 0)}  # the joint G_{t,k}'s margins
        for part, (value, axis) in margins.items():
            assert rel(jax.tree.map(lambda v, a=axis: v.sum(a), d.by_step_hops), value) <= TOL[dtype], (loss, part)
        assert all(x.dtype == jnp.dtype(dtype) for x in jax.tree.leaves((d.total, d.by_hops, d.state_grads)))
        assert bool(d.finite)
    cell, params, _ = setup(name, dtype)
    shapes = lambda tree, lead: jax.tree.leaves(jax.tree.map(lambda g, p: g.shape == (*lead, *p.shape), tree, params))
    assert all(shapes(d.by_step, (T,)) + shapes(d.by_distance, (T,)) + shapes(d.by_hops, (T + 1,)))
    assert all(shapes(d.by_distance_hops, (T, T + 1)) + shapes(d.by_step_hops, (T, T + 1)))
    state = cell.zero_state((), dtype)
    assert jax.tree.map(lambda v: v.shape, d.state_grads) == jax.tree.map(lambda v: (T, T + 1, B, *v.shape), state)


@pytest.mark.parametrize("name", [BY_CELL[n] for n, c in CELLS.items() if c.hop_edges])
def test_alpha_polynomial_identity_float64(name):
    """masked_grad with hop scale α equals Σ_k α^k by_hops[k] when no bucket clamps (K = T)."""
    for alpha in (0.0, 0.37, 1.0, -1.3):
        d, _, ref, masked = run(name, "float64", alpha=alpha)
        powers = alpha ** np.arange(T + 1.0)
        poly = jax.tree.map(lambda v, p=powers: np.tensordot(p, v, 1), d.by_hops)
        assert rel(poly, masked) <= 1e-12, alpha
        if alpha == 1.0:
            assert rel(masked, ref) <= 1e-12  # alpha = 1 is the plain gradient


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_clamped_last_bucket_collects_the_rest(name):
    d, clamped, _, _ = run(name, "float64", "every")
    assert rel(index(clamped.by_hops, slice(0, 2)), index(d.by_hops, slice(0, 2))) <= 1e-12
    assert rel(index(clamped.by_hops, 2), jax.tree.map(lambda v: v[2:].sum(0), d.by_hops)) <= 1e-12


@pytest.mark.parametrize("name", ["lstm", "gru", "mgu", "rnn"])
def test_masked_hop_edge_gives_the_zero_hop_class(name):
    d, _, _, masked = run(name, "float64", alpha=0.0)
    assert rel(index(d.by_hops, 0), masked) <= 1e-12
    if name == "rnn":  # cutting an RNN's only edge leaves the distance-0 gradient
        assert rel(index(d.by_distance, 0), masked) <= 1e-12


def test_no_forget_gate_highway_carries_dc_unchanged():
    d = run("lstm_nofg", "float64", "last")[0]
    c0 = d.state_grads.c[:, 0]  # [T, B, H], 0-hop class
    assert float(jnp.abs(c0[0]).max()) > 1e-3
    np.testing.assert_array_equal(np.asarray(c0[:-1]), np.broadcast_to(np.asarray(c0[-2]), c0[:-1].shape))
    c0_f = run("lstm", "float64", "last")[0].state_grads.c[:, 0]  # with a forget gate it shrinks by f
    assert float(jnp.linalg.norm(c0_f[0])) < float(jnp.linalg.norm(c0_f[-2]))


def test_state_grads_sum_to_the_full_state_adjoint():
    cell, params, xs = setup("lstm", "float64")
    lam = run("lstm", "float64", "nonlinear")[0].state_grads

    def perturbed_loss(dh_T, dc_T):
        def step(s, inp):
            x, dh, dc = inp
            s = cell.step(params, cell.read(s), x)
            s = gp.LSTMState(s.h + dh, s.c + dc)
            return s, s.h

        s0 = cell.zero_state((B,), xs.dtype)
        _, hs = jax.lax.scan(step, s0, (jnp.swapaxes(xs, 0, 1), dh_T, dc_T))
        return LOSSES["nonlinear"](jnp.swapaxes(hs, 0, 1))

    zeros = jnp.zeros((T, B, H))
    gh, gc = jax.grad(perturbed_loss, argnums=(0, 1))(zeros, zeros)
    np.testing.assert_allclose(lam.h.sum(1), gh, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(lam.c.sum(1), gc, rtol=1e-12, atol=1e-14)


def test_rnn_last_step_loss_hops_equal_distance():
    """With a last-step loss, a path from step t = T-1-d crosses exactly d recurrent edges."""
    d = run("rnn", "float64", "last")[0]
    assert rel(d.by_hops, jax.tree.map(lambda v: jnp.concatenate([v, v[:1] * 0]), d.by_distance)) < 1e-12


def test_by_distance_uses_distance_not_time():
    """A loss at one time τ gives no gradient at distance > τ, and distance d is step τ - d."""
    cell, params, xs = setup("lstm", "float64", batch=())
    tau = 2
    parts = ("distance", "step", "distance_hops", "step_hops")
    d = gp.decompose(cell, params, xs, lambda hs: hs[tau].sum(), max_hops=2, parts=parts)
    assert float(np.abs(flat(index(d.by_distance, slice(tau + 1, None)))).max()) == 0.0
    assert float(np.abs(flat(index(d.by_step, slice(tau + 1, None)))).max()) == 0.0
    for dist in range(tau + 1):
        assert rel(index(d.by_distance, dist), index(d.by_step, tau - dist)) < 1e-12
        assert rel(index(d.by_distance_hops, dist), index(d.by_step_hops, tau - dist)) < 1e-12


@pytest.mark.parametrize("name", CELLS)
def test_scan_matches_python_loop(name):
    cell, params, xs = setup(name, "float64", batch=())
    s = cell.zero_state((), jnp.float64)
    step = jax.jit(lambda s, x: cell.step(params, cell.read(s), x))  # one compile, not one per eager op
    hs = []
    for t in range(T):
        s = step(s, xs[t])
        hs.append(cell.output(s))
    np.testing.assert_allclose(gp.unroll(cell, params, xs), jnp.stack(hs), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])
def test_check_grads_on_unroll(name):
    cell, params, xs = setup(name, "float64", batch=())
    for backward in ("custom", "autodiff"):
        check_grads(lambda p, x, b=backward: gp.unroll(cell, p, x, backward=b), (params, xs), order=1, modes=("rev",))


def test_batch_axes_and_state0():
    cell, params, xs = setup("lstm", "float64", batch=(2, 3))
    hs = gp.unroll(cell, params, xs)
    assert hs.shape == (2, 3, T, H)
    np.testing.assert_allclose(hs[1, 2], gp.unroll(cell, params, xs[1, 2]), rtol=1e-13)
    s0 = gp.LSTMState(jnp.full((H,), 0.3), jnp.full((H,), -0.2))
    hs0 = gp.unroll(cell, params, xs, state0=s0)
    np.testing.assert_allclose(hs0[0, 1], gp.unroll(cell, params, xs[0, 1], state0=s0), rtol=1e-13)
    loss = lambda hs: jnp.sum(hs**2)
    d = gp.decompose(cell, params, xs, loss, max_hops=1, parts=("hops",), state0=s0)
    ref = jax.grad(lambda p: loss(gp.unroll(cell, p, xs, state0=s0, backward="autodiff")))(params)
    assert rel(d.total, ref) < 1e-12
    assert rel(jax.tree.map(lambda v: v.sum(0), d.by_hops), ref) < 1e-12


def test_batched_decomposition_is_the_sum_of_per_example_ones():
    cell, params, xs = setup("gru", "float64", batch=(3,))
    f = jax.jit(lambda p, x: gp.decompose(cell, p, x, LOSSES["every"], max_hops=2, parts=("step", "hops")))
    d = f(params, xs)
    each = [f(params, xs[i]) for i in range(3)]
    for field in ("total", "by_step", "by_hops"):
        assert rel(getattr(d, field), jax.tree.map(lambda *v: sum(v), *[getattr(e, field) for e in each])) < 1e-12


def test_vmap_over_seeds_stacks_results():
    cell = CELLS["lstm"]
    xs = jax.random.normal(jax.random.key(9), (T, I), jnp.float32)

    def one(key):
        return gp.decompose(cell, cell.init(key, I), xs, LOSSES["last"], max_hops=1, parts=("hops", "distance"))

    keys = jax.random.split(jax.random.key(0), 3)
    d = jax.jit(jax.vmap(one))(keys)
    assert d.by_hops["W_h"].shape == (3, 2, H, 4 * H)
    assert d.finite.shape == (3,)
    np.testing.assert_allclose(d.total["W_h"][1], one(keys[1]).total["W_h"], rtol=1e-5, atol=1e-7)


def test_second_jit_call_compiles_nothing():
    cell = CELLS["lstm"]
    traces = []

    @jax.jit
    def f(p, x):
        traces.append(1)
        return gp.decompose(cell, p, x, LOSSES["last"], max_hops=1, parts=("hops",))

    _, params, xs = setup("lstm", "float32")
    f(params, xs)
    with jax.log_compiles(False):
        f(jax.tree.map(lambda v: v + 1, params), xs * 2)
    assert len(traces) == 1


def test_finite_flag_counts_blown_up_runs():
    cell, params, xs = setup("rnn", "float32")
    d = gp.decompose(cell, params, xs.at[0, 0, 0].set(jnp.nan), LOSSES["last"], max_hops=1, parts=("hops",))
    assert not bool(d.finite)


def test_parts_not_asked_for_are_none():
    cell, params, xs = setup("lstm", "float32")
    d = gp.decompose(cell, params, xs, LOSSES["last"], parts=())
    assert d.by_step is None and d.by_distance is None and d.by_hops is None and d.state_grads is None
    assert rel(d.total, jax.grad(lambda p: LOSSES["last"](gp.unroll(cell, p, xs, backward="autodiff")))(params)) < 1e-5


def test_cells_expose_edges_and_param_shapes():
    assert gp.lstm(3).edges == ("highway", "gates") and gp.lstm(3).hop_edges == ("gates",)
    assert gp.rnn(3).edges == ("recurrent",) and gp.rnn(3).hop_edges == ("recurrent",)
    assert gp.gru(3).highway_edges == ("highway",)
    p = gp.lstm(5, forget_gate=False).init(jax.random.key(0), 2)
    assert p["W_h"].shape == (5, 15)
    b = gp.lstm(5, forget_bias=2.5).init(jax.random.key(0), 2)["b"]
    np.testing.assert_array_equal(b[5:10], 2.5)
    chrono = gp.lstm(64, chrono=100).init(jax.random.key(0), 2)["b"]
    assert 0.0 <= float(chrono[64:128].min()) and float(chrono[64:128].max()) <= np.log(99) + 1e-6
    np.testing.assert_allclose(chrono[:64], -chrono[64:128])
    w = gp.irnn(4).init(jax.random.key(0), 2)["W_h"]
    np.testing.assert_array_equal(w, np.eye(4))
    g = gp.rnn(400, recurrent_scale=0.5).init(jax.random.key(0), 1)["W_h"]
    assert abs(float(jnp.std(g)) * np.sqrt(400) - 0.5) < 0.01


def test_highway_jacobian_is_diag_f():
    cell, params, xs = setup("lstm", "float64", batch=())
    states = gp.unroll_states(cell, params, xs)
    t = 3
    prev = gp.LSTMState(states.h[t - 1], states.c[t - 1])
    u = xs[t] @ params["W_x"] + params["b"]
    a = cell.recurrent(params, prev.h)
    jac = jax.jacfwd(lambda c: cell.core(u, a, {"highway": c}).c)(prev.c)
    _, f, _, _ = cell.gate_values(u, a)
    np.testing.assert_allclose(jac, jnp.diag(f), rtol=0, atol=0)


# ----------------------------------------------------------------------------- bad input

BAD = [
    (lambda: gp.rnn(4, activation="swish"), ValueError, "activation must be one of"),
    (lambda: gp.lstm(0), ValueError, "hidden_size"),
    (lambda: gp.lstm(2.5), TypeError, "hidden_size"),
    (lambda: gp.rnn(3, recurrent_init="xavier"), ValueError, "recurrent_init"),
]


@pytest.mark.parametrize("make, exc, msg", BAD)
def test_bad_constructor_arguments_raise(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


def test_bad_call_arguments_raise():
    cell, params, xs = setup("lstm", "float32")
    loss = LOSSES["last"]
    with pytest.raises(ValueError, match="at least 2-D"):
        gp.unroll(cell, params, xs[0, 0])
    with pytest.raises(ValueError, match="input size 5"):
        gp.decompose(cell, params, jnp.ones((T, 5)), loss)
    with pytest.raises(ValueError, match="unknown edge"):
        gp.masked_grad(cell, params, xs, loss, {"recurrent": 0.0})
    with pytest.raises(ValueError, match="highway"):
        gp.unroll(cell, params, xs, scales={"forget": 0.0})
    with pytest.raises(ValueError, match="max_hops"):
        gp.decompose(cell, params, xs, loss, max_hops=-1)
    with pytest.raises(TypeError, match="max_hops"):
        gp.decompose(cell, params, xs, loss, max_hops=1.5)
    with pytest.raises(ValueError, match="scalar"):
        gp.decompose(cell, params, xs, lambda hs: hs[..., -1, :])
    with pytest.raises(ValueError, match="unknown part"):
        gp.decompose(cell, params, xs, loss, parts=("steps",))
    with pytest.raises(ValueError, match="do not belong"):
        gp.decompose(gp.gru(H), params, xs, loss)
    with pytest.raises(ValueError, match="do not belong"):
        gp.unroll(gp.lstm(H + 1), params, xs)
    with pytest.raises(TypeError, match="params must be"):
        gp.unroll(cell, [params["W_x"]], xs)
    with pytest.raises(TypeError, match="cell needs"):
        gp.unroll("lstm", params, xs)
    with pytest.raises(ValueError, match=r"\[T\]"):
        gp.unroll(cell, params, xs, scales={"gates": jnp.ones(T + 1)})
