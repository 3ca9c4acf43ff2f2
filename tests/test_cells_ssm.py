"""RG-LRU, S6 and the Mamba block: equations against numpy transcriptions and the packages'
forward passes, edge Jacobians, the parallel form, initialisation, defaults and input checks."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _trees import flat
from _trees import rel as _rel

import gradpaths as gp
from gradpaths.cells import REGISTRY, HState, MambaState, S6State, ssm
from gradpaths.parallel import parallel_decompose, parallel_states, parallel_unroll

T, H, I, B = 6, 4, 3, 2
F64 = jnp.float64
VARIANTS = {
    "rglru": ssm.rglru(H),
    "rglru_heads2_projected": ssm.rglru(H, num_heads=2),  # I ≠ H: W_in
    "rglru_square": ssm.rglru(I),  # I = H: no W_in
    "s6": ssm.s6(H, d_state=3),
    "s6_square_rank2": ssm.s6(I, d_state=2, dt_rank=2),
    "mamba": ssm.mamba(H, d_state=3, d_conv=3),
    "mamba_bias_k2": ssm.mamba(H, d_state=2, d_conv=2, expand=1, bias=True, conv_bias=False),
}


@functools.cache
def _setup(cell, dtype=F64, batch=(B,), seed=0):
    """params, xs, s0: drawn in one jitted call (eager draws compile once per op and shape)."""
    return jax.jit(_draw, static_argnums=(0, 1, 2, 3))(cell, dtype, batch, seed)


def _draw(cell, dtype, batch, seed):
    k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
    params = cell.init(k1, I, dtype)
    keys = jax.random.split(k3, len(params))
    params = {k: v + 0.2 * jax.random.normal(kk, v.shape, dtype) for kk, (k, v) in zip(keys, sorted(params.items()))}
    xs = jax.random.normal(k2, (*batch, T, I), dtype)
    s0 = jax.tree.map(lambda v: jax.random.normal(k4, v.shape, dtype), cell.zero_state(batch, dtype))
    return params, xs, s0


# --- equations, transcribed directly (one example, Python loop, numpy) ---------------------------


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softplus(x):
    return np.log1p(np.exp(x))


def _silu(x):
    return x * _sigmoid(x)


def _rglru_reference(cell, p, xs, h0):
    p = {k: np.asarray(v) for k, v in p.items()}
    blocks = lambda w: np.block(
        [[w[i] if i == j else np.zeros_like(w[i]) for j in range(len(w))] for i in range(len(w))]
    )
    w_a, w_x = blocks(p["W_a"]), blocks(p["W_x"])
    h, hs = np.asarray(h0), []
    for x in np.asarray(xs):
        x = x @ p["W_in"] if "W_in" in p else x
        r = _sigmoid(x @ w_a + p["b_a"].ravel())
        i = _sigmoid(x @ w_x + p["b_x"].ravel())
        a = _sigmoid(p["Lambda"]) ** (cell.c * r)
        h = a * h + np.sqrt(1 - a**2) * (i * x)
        hs.append(h)
    return np.stack(hs)


def _s6_reference(p, xs, h0):
    p = {k: np.asarray(v) for k, v in p.items()}
    h, ys = np.asarray(h0), []
    for x in np.asarray(xs):
        x = x @ p["W_in"] if "W_in" in p else x
        delta = _softplus(x @ p["W_delta"] @ p["W_dt"] + p["b_dt"])
        b, c, a = x @ p["W_B"], x @ p["W_C"], -np.exp(p["A_log"])
        for d in range(h.shape[0]):
            for n in range(h.shape[1]):
                h[d, n] = math.exp(delta[d] * a[d, n]) * h[d, n] + delta[d] * b[n] * x[d]
        ys.append(h @ c + p["D"] * x)
    return np.stack(ys)


def _mamba_reference(cell, p, xs, s0):
    p = {k: np.asarray(v) for k, v in p.items()}
    k = cell.d_conv
    u = np.asarray(xs) @ p["W_in"] + p.get("b_in", 0.0)
    x_in, z = np.split(u, 2, axis=-1)
    padded = np.concatenate([np.asarray(s0.conv), x_in])  # the window before step 1, then the inputs
    conv = np.stack([sum(p["w_conv"][j] * padded[t + j] for j in range(k)) for t in range(len(x_in))])
    conv = conv + p.get("b_conv", 0.0)
    s6_params = {n: p[n] for n in ("W_delta", "W_B", "W_C", "W_dt", "b_dt", "A_log", "D")}
    y = _s6_reference(s6_params, _silu(conv), np.array(s0.h))
    return (y * _silu(z)) @ p["W_out"] + p.get("b_out", 0.0)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_equations(name):
    cell = VARIANTS[name]
    params, xs, s0 = _setup(cell, batch=())
    got = gp.unroll(cell, params, xs, state0=s0)
    if name.startswith("rglru"):
        want = _rglru_reference(cell, params, xs, s0.h)
    elif name.startswith("s6"):
        want = _s6_reference(params, xs, np.array(s0.h))
    else:
        want = _mamba_reference(cell, params, xs, s0)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_rglru_matches_recurrentgemma_forward():
    """The library's own init and step against recurrentgemma's layer on the same weights."""
    layers = pytest.importorskip("recurrentgemma.jax.layers")
    cell = ssm.rglru(H, num_heads=2)
    params, xs, _ = _setup(cell, batch=(B,))
    params = {k: v for k, v in params.items() if k != "W_in"}
    xs = jax.random.normal(jax.random.key(5), (B, T, H), jnp.float32)
    params = {k: v.astype(jnp.float32) for k, v in params.items()}
    module = layers.RGLRU(width=H, num_heads=2)
    variables = {
        "params": {
            "a_param": -params["Lambda"],
            "a_gate": {"w": params["W_a"], "b": params["b_a"]},
            "input_gate": {"w": params["W_x"], "b": params["b_x"]},
        }
    }
    y, _ = module.apply(variables, xs, jnp.broadcast_to(jnp.arange(1, T + 1), (B, T)))
    assert _rel(gp.unroll(cell, params, xs), y) <= 1e-6


def test_s6_matches_mambapy_selective_scan():
    """S6 with I = H is mambapy's selective_scan (parallel and sequential) on the same Δ, B, C."""
    torch = pytest.importorskip("torch")
    mamba = pytest.importorskip("mambapy.mamba")
    cell = ssm.s6(H, d_state=3)
    params, _, _ = _setup(cell)
    params = {k: v for k, v in params.items() if k != "W_in"}
    xs = jax.random.normal(jax.random.key(5), (B, T, H), F64)
    block = mamba.MambaBlock(mamba.MambaConfig(d_model=H, n_layers=1, d_state=3, expand_factor=1)).double()
    p = {k: torch.from_numpy(np.array(v)) for k, v in params.items()}
    x = torch.from_numpy(np.array(xs))
    delta = torch.nn.functional.softplus(x @ p["W_delta"] @ p["W_dt"] + p["b_dt"])
    args = (x, delta, -torch.exp(p["A_log"]), x @ p["W_B"], x @ p["W_C"], p["D"])
    for y in (block.selective_scan(*args), block.selective_scan_seq(*args)):
        assert _rel(gp.unroll(cell, params, xs), jnp.asarray(y.numpy())) <= 1e-12


# --- edge Jacobians ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rglru", "rglru_heads2_projected", "s6", "s6_square_rank2"])
def test_highway_jacobian_is_diag_a(name):
    """RG-LRU: ∂h_t/∂h_{t-1} = diag(a_t); S6: diag(exp(Δ_t A)) on the flattened [H·N] state."""
    cell = VARIANTS[name]
    params, xs, s0 = _setup(cell, batch=())
    jac = gp.edge_jacobians(cell, params, xs, state0=s0)["highway"]
    a_T = jax.vmap(lambda x: jnp.ravel(cell.coefficients(params, x)[0]["highway"]))(xs)
    n = a_T.shape[1]  # S6's state also holds y (read by no edge): its rows are not zero, its columns are
    np.testing.assert_allclose(jac[:, :n, :n], jax.vmap(jnp.diag)(a_T), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(jac[:, :, n:], 0.0)
    assert cell.hop_edges == () and cell.edges == ("highway",)


def test_mamba_edge_jacobians():
    """conv_shift is the shift register (exactly 0/1), the highway is diag(exp(Δ_t A)) on h,
    and the conv (hop) edge reaches h and y but never the window."""
    cell = VARIANTS["mamba"]
    params, xs, s0 = _setup(cell, batch=())
    jac = gp.edge_jacobians(cell, params, xs, state0=s0)
    assert set(jac) == {"highway", "conv", "conv_shift"} and cell.hop_edges == ("conv",)
    assert VARIANTS["mamba_bias_k2"].edges == ("highway", "conv")  # K = 2: nothing to shift
    e, n, k = cell.inner, cell.d_state, cell.d_conv
    nh, nc = e * n, (k - 1) * e  # flattened state: (h, conv, y)
    shift = jnp.eye(nc, k=e)[: (k - 2) * e]  # window_t[j] = window_{t-1}[j + 1]
    for t in range(T):
        np.testing.assert_array_equal(jac["conv_shift"][t, nh : nh + (k - 2) * e, nh : nh + nc], shift)
    np.testing.assert_array_equal(jac["conv_shift"][:, :nh], 0.0)
    np.testing.assert_array_equal(jac["conv"][:, nh : nh + nc], 0.0)
    assert float(jnp.abs(jac["conv"][:, :nh, nh : nh + nc]).max()) > 0
    x_in = (xs @ params["W_in"])[:, :e]
    padded = jnp.concatenate([s0.conv, x_in])
    c = sum(params["w_conv"][j] * padded[j : j + T] for j in range(k)) + params["b_conv"]
    decay = jax.vmap(lambda x: ssm._s6_coefficients(params, x)[0].ravel())(jax.nn.silu(c))
    np.testing.assert_allclose(jac["highway"][:, :nh, :nh], jax.vmap(jnp.diag)(decay), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(jac["highway"][:, nh : nh + nc], 0.0)


@pytest.mark.parametrize("name", ["mamba_bias_k2"])  # the default mamba: test_core's α-polynomial test
def test_mamba_hops_are_conv_crossings(name):
    """masked_grad with the conv hop cut equals the 0-hop bucket; every part sums to jax.grad."""
    cell = VARIANTS[name]
    params, xs, s0 = _setup(cell)
    loss = lambda hs: jnp.sum(jnp.tanh(hs) * jnp.arange(hs.size, dtype=hs.dtype).reshape(hs.shape) / hs.size)
    d = gp.decompose(cell, params, xs, loss, max_hops=2, state0=s0, parts=("hops",))
    grad = jax.grad(lambda p: loss(gp.unroll(cell, p, xs, state0=s0)))(params)
    assert _rel(d.total, grad) <= 1e-12
    assert _rel(jax.tree.map(lambda g: g.sum(0), d.by_hops), grad) <= 1e-12
    cut = gp.masked_grad(cell, params, xs, loss, scales={"conv": 0.0}, state0=s0)
    assert _rel(cut, jax.tree.map(lambda g: g[0], d.by_hops)) <= 1e-12
    assert np.abs(flat(jax.tree.map(lambda g: g[1], d.by_hops))).max() > 0  # one conv crossing carries gradient


# --- parallel form -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "state0"), [("rglru_heads2_projected", "batched"), ("s6", "batched"), ("rglru", "zeros")]
)
def test_parallel_equals_sequential(name, state0):
    cell = VARIANTS[name]
    params, xs, s0 = _setup(cell)
    s0 = None if state0 == "zeros" else s0
    w = jax.random.normal(jax.random.key(9), (B, T, cell.hidden_size), F64)
    loss = lambda f: lambda p, x, s: (f(p, x, s) * w).sum()
    seq_f = lambda p, x, s: gp.unroll(cell, p, x, state0=s)
    par_f = lambda p, x, s: parallel_unroll(cell, p, x, s)

    @jax.jit  # one call per case: eager associative scans are slow
    def run(params, xs, s0):
        outs = (par_f(params, xs, s0), seq_f(params, xs, s0))
        states = (parallel_states(cell, params, xs, s0), gp.unroll_states(cell, params, xs, state0=s0))
        grads = None if s0 is None else [jax.grad(loss(f), (0, 1, 2))(params, xs, s0) for f in (par_f, seq_f)]
        return outs, states, grads

    outs, states, grads = run(params, xs, s0)
    assert _rel(*outs) <= 1e-12
    assert _rel(*states) <= 1e-12
    if grads is not None:
        assert _rel(*grads) <= 1e-12


@pytest.mark.parametrize("name", ["s6"])
def test_parallel_decompose(name):
    cell = VARIANTS[name]
    params, xs, s0 = _setup(cell)
    loss = lambda hs: (jnp.sin(hs) ** 2).sum()
    kw = dict(max_hops=1, state0=s0, parts=("step", "hops"))
    both = jax.jit(lambda p, x: (parallel_decompose(cell, p, x, loss, **kw), gp.decompose(cell, p, x, loss, **kw)))
    par, ref = both(params, xs)
    for part in ("total", "by_step", "by_hops"):
        assert _rel(getattr(par, part), getattr(ref, part)) <= 1e-12, part


# --- init, defaults, registry, check_cell -------------------------------------------------------


def test_defaults_and_registry():
    for name, make, state in (("rglru", gp.rglru, HState), ("s6", gp.s6, S6State), ("mamba", gp.mamba, MambaState)):
        cell = make(64)
        assert REGISTRY[name] is make and cell.hidden_size == 64
        params = cell.init(jax.random.key(0), 8)
        assert all(v.dtype == jnp.float32 for v in params.values())
        hs = gp.unroll(cell, params, jnp.ones((2, 3, 8), jnp.float32))
        assert hs.shape == (2, 3, 64) and hs.dtype == jnp.float32 and bool(jnp.isfinite(hs).all())
        assert isinstance(cell.zero_state(), state)
    assert gp.s6(64).rank == 4 and gp.mamba(64).inner == 128 and gp.mamba(64).rank == 4


@pytest.mark.parametrize("name", ["mamba_bias_k2"])  # the defaults: test_core
def test_check_cell(name):
    errs = gp.check_cell(VARIANTS[name], I)
    assert max(errs.values()) <= 1e-12


def test_rglru_init_ring():
    """σ(Λ) ∈ [min_rad, max_rad] with σ(Λ)² uniform (recurrentgemma's ring); gates' biases 0."""
    cell = ssm.rglru(512, num_heads=4, min_rad=0.5)
    p = cell.init(jax.random.key(0), 512, F64)
    base = jax.nn.sigmoid(p["Lambda"])
    assert float(base.min()) >= 0.5 - 1e-9 and float(base.max()) <= 0.999 + 1e-9
    assert abs(float(jnp.mean(base**2)) - (0.5**2 + 0.999**2) / 2) < 0.03
    assert p["W_a"].shape == (4, 128, 128) and "W_in" not in p
    assert float(jnp.abs(p["b_a"]).max()) == 0 and abs(float(jnp.std(p["W_a"])) * math.sqrt(512) - 1) < 0.05


def test_s6_init():
    cell = ssm.s6(32, d_state=5, dt_min=0.01, dt_max=0.2)
    p = cell.init(jax.random.key(0), 32, F64)
    np.testing.assert_allclose(-jnp.exp(p["A_log"]), -jnp.broadcast_to(jnp.arange(1.0, 6.0), (32, 5)), rtol=1e-15)
    np.testing.assert_array_equal(p["D"], 1.0)
    dt = jax.nn.softplus(p["b_dt"])
    assert float(dt.min()) >= 0.01 - 1e-12 and float(dt.max()) <= 0.2 + 1e-12
    assert p["W_dt"].shape == (2, 32) and p["W_delta"].shape == (32, 2)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "match"),
    [
        (gp.rglru, {"hidden_size": 0}, ValueError, "hidden_size"),
        (gp.rglru, {"hidden_size": 4.0}, TypeError, "hidden_size"),
        (gp.rglru, {"hidden_size": 6, "num_heads": 4}, ValueError, "divide"),
        (gp.rglru, {"hidden_size": 4, "min_rad": 0.99, "max_rad": 0.9}, ValueError, "min_rad"),
        (gp.rglru, {"hidden_size": 4, "max_rad": 1.0}, ValueError, "max_rad"),
        (gp.rglru, {"hidden_size": 4, "c": -1.0}, ValueError, "c must"),
        (gp.s6, {"hidden_size": 4, "d_state": 0}, ValueError, "d_state"),
        (gp.s6, {"hidden_size": 4, "dt_rank": "big"}, TypeError, "dt_rank"),
        (gp.s6, {"hidden_size": 4, "dt_min": 0.5, "dt_max": 0.1}, ValueError, "dt_min"),
        (gp.mamba, {"hidden_size": 4, "d_conv": 1}, ValueError, "d_conv"),
        (gp.mamba, {"hidden_size": 4, "expand": 0}, ValueError, "expand"),
    ],
)
def test_bad_options_raise(make, kwargs, error, match):
    with pytest.raises(error, match=match):
        make(**kwargs)


@pytest.mark.parametrize("name", ["rglru", "s6", "mamba"])
def test_bad_input_raises(name):
    cell = VARIANTS[name]
    params = cell.init(jax.random.key(0), I, F64)
    with pytest.raises(ValueError, match="one example"):
        cell.step(params, cell.read(cell.zero_state((), F64)), jnp.ones((B, I)))
    with pytest.raises(ValueError, match="input size"):
        gp.unroll(cell, params, jnp.ones((T, I + 1)))
    with pytest.raises(ValueError, match="input_size"):
        cell.init(jax.random.key(0), 0)
