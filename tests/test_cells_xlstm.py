"""xLSTM cells (sLSTM, mLSTM) and the LSTM variants (peephole, layer norm): equations
against plain references, the stabiliser's invariance, the highway Jacobians, the mLSTM's
parallel form (max-plus scan of the stabiliser, then the linear memory), defaults and
errors. Exactness of every decomposition comes from test_core's registry tables."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _trees import rel as _rel

import gradpaths as gp
from gradpaths.cells import REGISTRY, layer_norm_lstm, mlstm, peephole_lstm, slstm
from gradpaths.cells.xlstm import MLSTMJacobian, SLSTMState
from gradpaths.parallel import max_plus_scan, parallel_decompose, parallel_states, parallel_unroll

T, I, B = 6, 3, 2
F64 = jnp.float64


def _xs(shape=(T, I), scale=1.0, seed=1):
    return scale * jax.random.normal(jax.random.key(seed), shape, F64)


@functools.cache
def _randomised(cell, seed=0, scale=0.5):
    """Parameters with every entry random (so no gain, bias or peephole is trivially 0 or 1)."""
    return jax.jit(_draw_randomised, static_argnums=(0, 1, 2))(cell, seed, scale)


def _draw_randomised(cell, seed, scale):
    p = cell.init(jax.random.key(seed), I, F64)
    keys = jax.random.split(jax.random.key(seed + 100), len(p))
    return {k: v + scale * jax.random.normal(kk, v.shape, F64) for (k, v), kk in zip(sorted(p.items()), keys)}


def _block_diag(r_NxDxD):
    return jax.scipy.linalg.block_diag(*r_NxDxD)


@functools.partial(jax.jit, static_argnums=2)
def slstm_reference(p, xs, heads):
    """Unstabilised sLSTM in a Python loop: c̄, n̄ with ĩ = exp(i_pre), f̃ = σ(f_pre)."""
    hid = p["W_x"].shape[1] // 4
    c = n = h = jnp.zeros(hid, F64)
    hs = []
    for x in xs:
        pre = [x @ p["W_x"][:, g * hid : (g + 1) * hid] + p["b"][g * hid : (g + 1) * hid] for g in range(4)]
        pre = [pre[g] + h @ _block_diag(p["R"][g]) for g in range(4)]
        i, f, z, o = jnp.exp(pre[0]), jax.nn.sigmoid(pre[1]), jnp.tanh(pre[2]), jax.nn.sigmoid(pre[3])
        c, n = f * c + i * z, f * n + i
        h = o * c / n
        hs.append(h)
    return jnp.stack(hs)


@functools.partial(jax.jit, static_argnums=2)
def mlstm_reference(p, xs, heads):
    """Unstabilised mLSTM in its parallel (attention-like) form, head by head:
    h̃_t = Σ_s D_ts (q_t·k_s) v_s / max(|Σ_s D_ts q_t·k_s|, 1), D_ts = ĩ_s Π_{r=s+1..t} f̃_r."""
    hid = (p["W_x"].shape[1] - 2 * heads) // 4
    dh = hid // heads
    u = xs @ p["W_x"] + p["b"]
    q, k, v, o = (u[:, j * hid : (j + 1) * hid].reshape(len(xs), heads, dh) for j in range(4))
    k = k / np.sqrt(dh)
    log_i, log_f = u[:, 4 * hid : 4 * hid + heads], jax.nn.log_sigmoid(u[:, 4 * hid + heads :])
    cum = jnp.cumsum(log_f, axis=0)  # [T, NH]
    log_d = cum[:, None, :] - cum[None, :, :] + log_i[None, :, :]  # [t, s, NH]
    causal = jnp.tril(jnp.ones((len(xs), len(xs)), bool))[:, :, None]
    d = jnp.where(causal, jnp.exp(log_d), 0.0)
    w = d * jnp.einsum("tnd,snd->tsn", q, k)
    h = jnp.einsum("tsn,snd->tnd", w, v) / jnp.maximum(jnp.abs(w.sum(1)), 1.0)[:, :, None]
    return jax.nn.sigmoid(o).reshape(len(xs), hid) * h.reshape(len(xs), hid)


XLSTM_CASES = [
    (slstm, slstm_reference, 1),
    (slstm, slstm_reference, 2),
    (mlstm, mlstm_reference, 1),
    (mlstm, mlstm_reference, 2),
]


@pytest.mark.parametrize(("make", "reference", "heads"), XLSTM_CASES)
def test_stabilised_equals_unstabilised_outputs_and_gradients(make, reference, heads):
    cell = make(4, num_heads=heads)
    p, xs = _randomised(cell), _xs()
    np.testing.assert_allclose(gp.unroll(cell, p, xs), reference(p, xs, heads), rtol=1e-12, atol=1e-13)
    g = jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(gp.unroll(cell, p, xs)))))(p)
    g_ref = jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(reference(p, xs, heads)))))(p)
    for k in p:
        np.testing.assert_allclose(g[k], g_ref[k], rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("make", [slstm, mlstm])
def test_outputs_do_not_depend_on_the_stabiliser(make):
    """Rescaling the initial memory to any m_0, (c, n) -> e^{-μ}(c, n), m -> m + μ, leaves every h_t unchanged."""
    cell = make(4, num_heads=2)
    p, xs = _randomised(cell), _xs()
    warm = gp.unroll_states(cell, p, _xs(seed=7))
    s0 = jax.tree.map(lambda a: a[-1], warm)
    hs = gp.unroll(cell, p, xs, state0=s0)
    for mu in (-3.0, 0.5, 4.0):
        scale = jnp.exp(-mu)
        moved = s0._replace(m=s0.m + mu, n=s0.n * scale)
        moved = moved._replace(**({"C": s0.C * scale} if hasattr(s0, "C") else {"c": s0.c * scale}))
        np.testing.assert_allclose(gp.unroll(cell, p, xs, state0=moved), hs, rtol=1e-12, atol=1e-13)


def test_stabiliser_keeps_large_input_gates_finite_in_float32():
    """ĩ = exp(60) overflows float32 unstabilised; the stabilised cell matches the float64 reference."""
    cell = slstm(4)
    p = _randomised(cell)
    p["b"] = p["b"].at[:4].set(60.0)
    xs = _xs()
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), p)
    hs = gp.unroll(cell, p32, xs.astype(jnp.float32))
    assert hs.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(hs)))
    assert not bool(jnp.all(jnp.isfinite(jnp.exp(jnp.float32(60.0)) * jnp.exp(jnp.float32(60.0)))))
    np.testing.assert_allclose(hs, slstm_reference(p, xs, 1), rtol=1e-5, atol=1e-5)


def _stabilised_gates(cell, p, xs):
    """f_t [T, NH or H] recomputed from the unrolled states: f_t = σ(f_pre) e^{m_{t-1} - m_t}."""
    states = gp.unroll_states(cell, p, xs)
    m_prev = jnp.concatenate([jnp.zeros_like(states.m[:1]), states.m[:-1]])
    if isinstance(states, SLSTMState):
        hid = cell.hidden_size
        h_prev = jnp.concatenate([jnp.zeros((1, hid)), states.h[:-1]])
        pre_f = xs @ p["W_x"][:, hid : 2 * hid] + p["b"][hid : 2 * hid] + h_prev @ _block_diag(p["R"][1])
    else:
        hid, heads = cell.hidden_size, cell.num_heads
        pre_f = (xs @ p["W_x"] + p["b"])[:, 4 * hid + heads :]
    return jax.nn.sigmoid(pre_f) * jnp.exp(m_prev - states.m)


@pytest.mark.parametrize("make", [slstm, mlstm])
def test_highway_jacobian_is_the_forget_gate(make):
    """∂c_t/∂c_{t-1} = diag(f_t) (sLSTM), ∂C_t/∂C_{t-1} = f_t I per head (mLSTM), on the highway edge only."""
    cell = make(4, num_heads=2)
    p, xs = _randomised(cell), _xs()
    jac = gp.edge_jacobians(cell, p, xs)
    f = _stabilised_gates(cell, p, xs)
    size = cell.hidden_size if make is slstm else cell.num_heads * cell.head_dim**2
    per_unit = f if make is slstm else jnp.repeat(f, cell.head_dim**2, axis=1)
    block = jac["highway"][1:, :size, :size]  # t = 1 starts from the empty memory (see the module docstring)
    np.testing.assert_allclose(block, jax.vmap(jnp.diag)(per_unit[1:]), rtol=1e-12, atol=1e-14)
    if make is slstm:  # the gates edge carries h alone; the highway never reads h
        np.testing.assert_array_equal(jac["gates"][:, :, : 3 * size], 0.0)
        np.testing.assert_array_equal(jac["highway"][:, :, 3 * size :], 0.0)


def test_mlstm_is_highway_only():
    cell = mlstm(4, num_heads=2)
    assert cell.edges == ("highway",) and cell.hop_edges == ()
    p, xs = _randomised(cell), _xs((B, T, I))
    d = gp.decompose(cell, p, xs, lambda hs: jnp.sum(hs**2), max_hops=2, parts=("hops",))
    for k in p:
        np.testing.assert_array_equal(d.by_hops[k][1:], 0.0)


# --- the mLSTM's parallel form ------------------------------------------------------------------

PAR_CELL = mlstm(4, num_heads=2)
PAR_T = 8
_states = {
    "parallel": jax.jit(lambda p, xs, s0: parallel_states(PAR_CELL, p, xs, s0)),
    "sequential": jax.jit(lambda p, xs, s0: gp.unroll_states(PAR_CELL, p, xs, state0=s0)),
}


def _par_setup(dtype=F64):
    """Random params, xs [B, T, I] and a random (non-empty) state0, one per batch element."""
    p = jax.tree.map(lambda v: v.astype(dtype), _randomised(PAR_CELL))
    xs = _xs((B, PAR_T, I)).astype(dtype)
    s0 = jax.tree.map(lambda v: jax.random.normal(jax.random.key(5), v.shape, dtype), PAR_CELL.zero_state((B,), dtype))
    return p, xs, s0


def test_max_plus_scan_is_the_recurrence():
    p = jnp.array([-0.5, -jnp.inf, -0.1, -2.0, -0.3], F64)[:, None] * jnp.array([1.0, 2.0], F64)
    r = jnp.array([[0.3, -1.0], [-4.0, 2.0], [1.0, 0.0], [-3.0, 5.0], [0.2, -9.0]], F64)
    m0 = jnp.array([[2.0, -1.0], [-jnp.inf, -jnp.inf]], F64)
    got = jax.jit(jax.vmap(max_plus_scan, (None, None, 0)))(p, r, m0)
    for m, got_m in zip(m0, got):
        want = []
        for pt, rt in zip(np.asarray(p), np.asarray(r)):
            m = np.maximum(pt + m, rt)
            want.append(m)
        np.testing.assert_allclose(got_m, np.stack(want), rtol=1e-15)


@pytest.mark.parametrize("dtype", [F64, jnp.float32])
def test_mlstm_parallel_equals_sequential(dtype):
    """States and outputs from a random state0, from the zero state, and through an empty memory
    (leading zero inputs write k = 0; a state0 with n = 0 restarts m): f64 ≤ 1e-12, f32 ≤ 1e-5."""
    tol = 1e-12 if dtype == F64 else 1e-5
    p, xs, s0 = _par_setup(dtype)
    p_empty = dict(p, b=p["b"].at[: 4 * PAR_CELL.hidden_size].set(0.0))  # q, k, v of a zero input are 0
    x_empty = xs.at[:, :3].set(0.0)
    s_empty = s0._replace(C=jnp.zeros_like(s0.C), n=jnp.zeros_like(s0.n), m=s0.m + 5.0)
    zero = PAR_CELL.zero_state((B,), dtype)
    for case in [(p, xs, s0), (p, xs, zero), (p_empty, x_empty, s_empty), (p_empty, x_empty, zero)]:
        par, seq = _states["parallel"](*case), _states["sequential"](*case)
        assert par.h.dtype == dtype and par.h.shape == (B, PAR_T, PAR_CELL.hidden_size)
        assert _rel(par, seq) <= tol and _rel(par.h, seq.h) <= tol
    # the restart is real: from s_empty, m_t = log ĩ_t while the memory is empty, not log f̃_t + m_{t-1}
    u = x_empty @ p_empty["W_x"] + p_empty["b"]
    log_i, pre_f = jnp.split(u[..., 4 * PAR_CELL.hidden_size :], 2, axis=-1)
    m = _states["parallel"](p_empty, x_empty, s_empty).m
    np.testing.assert_allclose(m[:, :3], log_i[:, :3], rtol=tol)
    assert bool(jnp.all(jax.nn.log_sigmoid(pre_f[:, 0]) + s_empty.m > log_i[:, 0]))


def test_mlstm_parallel_decompose_equals_decompose():
    """Every part (total, by_step, by_distance with a tail bucket, by_hops, state_grads), with a
    random state0, equals gp.decompose's in f64 ≤ 1e-12: the reverse pass carries m's paths
    (through the max and through f_t, i_t and the floor e^{-m}) by the step's own Jacobian."""
    p, xs, s0 = _par_setup()
    w = jax.random.normal(jax.random.key(4), (B, PAR_T, PAR_CELL.hidden_size), F64)
    loss = lambda hs: (jnp.tanh(hs) * w).sum()
    kw = dict(max_hops=1, max_distance=3)
    par = jax.jit(lambda p, xs, s0: parallel_decompose(PAR_CELL, p, xs, loss, state0=s0, **kw))(p, xs, s0)
    ref = jax.jit(lambda p, xs, s0: gp.decompose(PAR_CELL, p, xs, loss, state0=s0, **kw))(p, xs, s0)
    assert bool(par.finite) and abs(float(par.loss - ref.loss)) <= 1e-12 * abs(float(ref.loss))
    for part in ("total", "by_step", "by_distance", "by_hops", "state_grads"):
        assert _rel(getattr(par, part), getattr(ref, part)) <= 1e-12, part
    for part in ("by_step", "by_distance", "by_hops"):
        assert _rel(jax.tree.map(lambda g: g.sum(0), getattr(par, part)), ref.total) <= 1e-12, part


@jax.jit
def _jacobian_actions(p, e_2, x_2, v):
    """(J_t·v, the step's jvp along v) for two steps, and (J_2 J_1)·v against J_2·(J_1·v)."""
    step = lambda e, x: PAR_CELL.read(PAR_CELL.step(p, e, x))
    jac = jax.vmap(PAR_CELL.jacobian, (None, 0, 0))(p, e_2, x_2)
    by_j = jax.vmap(PAR_CELL.mul, (0, None))(jac, v)
    by_jvp = jax.vmap(lambda e, x: jax.jvp(lambda ee: step(ee, x), (e,), (v,))[1])(e_2, x_2)
    j1, j2 = (jax.tree.map(lambda a, i=i: a[i], jac) for i in (0, 1))
    return jac, by_j, by_jvp, PAR_CELL.mul(PAR_CELL.mul(j2, j1), v), PAR_CELL.mul(j2, PAR_CELL.mul(j1, v))


def test_mlstm_jacobian_is_the_steps_own():
    """J·v equals the step's forward derivative along v (m's column included), and mul composes J's in order."""
    p, xs, s0 = _par_setup()
    e_2 = PAR_CELL.read(jax.tree.map(lambda v: v[0, 2:4], _states["sequential"](p, xs, s0)))
    v = jax.tree.map(lambda a: jax.random.normal(jax.random.key(6), a.shape[1:], F64), e_2)
    jac, by_j, by_jvp, composed, twice = _jacobian_actions(p, e_2, xs[0, 3:5], v)
    assert isinstance(jac, MLSTMJacobian) and bool(jnp.all(jnp.abs(jac.u_C).sum((-1, -2)) > 0))
    assert _rel(by_j, by_jvp) <= 1e-14 and _rel(composed, twice) <= 1e-14


def test_mlstm_parallel_rejects_bad_input():
    p, xs, s0 = _par_setup()
    with pytest.raises(ValueError, match="state0 leaf"):
        parallel_unroll(PAR_CELL, p, xs, s0._replace(m=s0.m[:, :1]))
    with pytest.raises(ValueError, match=r"\[T, I\]"):
        parallel_decompose(PAR_CELL, p, xs[0, 0], jnp.sum)

    class NoJacobian:  # a stabilised cell must say what its Jacobian is
        def __getattr__(self, name):
            if name == "jacobian":
                raise AttributeError(name)
            return getattr(PAR_CELL, name)

    with pytest.raises(TypeError, match="no jacobian"):
        parallel_unroll(NoJacobian(), p, xs)


def test_defaults_just_work():
    for make in (slstm, mlstm, peephole_lstm, layer_norm_lstm):
        cell = make(64)
        p = cell.init(jax.random.key(0), 5)
        hs = gp.unroll(cell, p, jnp.ones((2, 7, 5), jnp.float32))
        assert hs.shape == (2, 7, 64) and hs.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(hs)))
    assert (REGISTRY["slstm"], REGISTRY["mlstm"]) == (slstm, mlstm)
    assert (REGISTRY["lstm_peephole"], REGISTRY["lstm_layernorm"]) == (peephole_lstm, layer_norm_lstm)
    assert slstm(8).edges == ("highway", "gates") and slstm(8).hop_edges == ("gates",)
    assert peephole_lstm(8).hop_edges == ("peephole", "gates")


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: slstm(6, num_heads=4), ValueError, "num_heads=4 must divide hidden_size=6"),
        (lambda: mlstm(0), ValueError, "hidden_size must be an int >= 1"),
        (lambda: slstm(4.0), TypeError, "hidden_size must be an int"),
        (lambda: mlstm(4, num_heads=True), TypeError, "num_heads must be an int"),
        (lambda: mlstm(4, eps=-1.0), ValueError, "eps must be >= 0"),
        (lambda: layer_norm_lstm(4, eps=0.0), ValueError, "eps must be > 0"),
        (lambda: peephole_lstm(-1), ValueError, "hidden_size must be an int >= 1"),
        (lambda: slstm(4).init(jax.random.key(0), 0), ValueError, "input_size must be an int >= 1"),
    ],
)
def test_clear_errors(build, error, match):
    with pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize("make", [slstm, mlstm, peephole_lstm, layer_norm_lstm])
def test_float32_stays_float32(make):
    cell = make(4, **({"num_heads": 2} if make in (slstm, mlstm) else {}))
    p = cell.init(jax.random.key(0), I)
    g = jax.grad(lambda p: jnp.sum(gp.unroll(cell, p, _xs().astype(jnp.float32))))(p)
    assert {a.dtype for a in jax.tree.leaves((p, g))} == {jnp.dtype(jnp.float32)}


@jax.jit
def peephole_reference(p, xs):
    hid = p["W_h"].shape[0]
    h = c = jnp.zeros(hid, F64)
    out = []
    for x in xs:
        z = x @ p["W_x"] + h @ p["W_h"] + p["b"]
        i = jax.nn.sigmoid(z[:hid] + p["w_ci"] * c)
        f = jax.nn.sigmoid(z[hid : 2 * hid] + p["w_cf"] * c)
        c = f * c + i * jnp.tanh(z[2 * hid : 3 * hid])
        h = jax.nn.sigmoid(z[3 * hid :] + p["w_co"] * c) * jnp.tanh(c)
        out.append(h)
    return jnp.stack(out)


@jax.jit
def layer_norm_reference(p, xs, eps=1e-5):
    def ln(z, g, b):
        return g * (z - z.mean()) / jnp.sqrt(z.var() + eps) + b

    hid = p["W_h"].shape[0]
    h = c = jnp.zeros(hid, F64)
    out = []
    for x in xs:
        z = ln(h @ p["W_h"], p["g_h"], p["beta_h"]) + ln(x @ p["W_x"], p["g_x"], p["beta_x"]) + p["b"]
        i, f, g, o = (z[j * hid : (j + 1) * hid] for j in range(4))
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(ln(c, p["g_c"], p["beta_c"]))
        out.append(h)
    return jnp.stack(out)


@pytest.mark.parametrize(
    ("make", "reference"), [(peephole_lstm, peephole_reference), (layer_norm_lstm, layer_norm_reference)]
)
def test_lstm_variant_equations(make, reference):
    cell = make(4)
    p, xs = _randomised(cell), _xs()
    np.testing.assert_allclose(gp.unroll(cell, p, xs), reference(p, xs), rtol=1e-12, atol=1e-13)


def test_peephole_lstm_without_peepholes_is_the_lstm():
    cell, lstm = peephole_lstm(4), gp.lstm(4)
    p = _randomised(cell)
    p |= {k: jnp.zeros_like(p[k]) for k in ("w_ci", "w_cf", "w_co")}
    xs = _xs()
    plain = {k: p[k] for k in ("W_x", "W_h", "b")}
    np.testing.assert_allclose(gp.unroll(cell, p, xs), gp.unroll(lstm, plain, xs), rtol=1e-13, atol=1e-14)
    g = gp.masked_grad(cell, p, xs, lambda hs: jnp.sum(hs**2), scales={"peephole": 0.0})
    g_lstm = jax.grad(lambda q: jnp.sum(gp.unroll(lstm, q, xs) ** 2))(plain)
    for k in plain:  # with w_c = 0 the peephole edge carries no gradient into W_x, W_h, b
        np.testing.assert_allclose(g[k], g_lstm[k], rtol=1e-12, atol=1e-14)


def test_peephole_edge_jacobian():
    """∂c_t/∂c_{t-1} through the peephole edge = diag(c_{t-1} σ'_f w_cf + g σ'_i w_ci); the highway's is diag(f)."""
    cell = peephole_lstm(4)
    p, xs = _randomised(cell), _xs()
    states = gp.unroll_states(cell, p, xs)
    jac = gp.edge_jacobians(cell, p, xs)
    hid = 4
    h_prev = jnp.concatenate([jnp.zeros((1, hid)), states.h[:-1]])
    c_prev = jnp.concatenate([jnp.zeros((1, hid)), states.c[:-1]])
    z = xs @ p["W_x"] + h_prev @ p["W_h"] + p["b"]
    zi, zf, zg = z[:, :hid] + p["w_ci"] * c_prev, z[:, hid : 2 * hid] + p["w_cf"] * c_prev, z[:, 2 * hid : 3 * hid]
    sig_d = lambda a: jax.nn.sigmoid(a) * (1 - jax.nn.sigmoid(a))  # noqa: E731
    want_peep = c_prev * sig_d(zf) * p["w_cf"] + jnp.tanh(zg) * sig_d(zi) * p["w_ci"]
    c_block = slice(hid, 2 * hid)  # LSTMState(h, c): c is the second block
    np.testing.assert_allclose(
        jac["peephole"][:, c_block, c_block], jax.vmap(jnp.diag)(want_peep), rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(
        jac["highway"][:, c_block, c_block], jax.vmap(jnp.diag)(jax.nn.sigmoid(zf)), rtol=1e-12, atol=1e-14
    )
