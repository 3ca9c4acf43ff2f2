"""minGRU, minLSTM and LRU: equations against direct numpy transcriptions, the parallel
(associative-scan) forward against the sequential one, edge Jacobians, and input checks."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _trees import rel as _rel

import gradpaths as gp
from gradpaths.cells import REGISTRY, gated_linear
from gradpaths.parallel import parallel_decompose, parallel_states, parallel_unroll

T, H, I, B = 6, 4, 3, 2
NAMES = ("mingru", "minlstm", "lru")
VARIANTS = {
    "mingru": gated_linear.mingru(H),
    "mingru_linear_proj": gated_linear.mingru(H, candidate="linear", output_size=5),
    "minlstm": gated_linear.minlstm(H),
    "minlstm_nobias_proj": gated_linear.minlstm(H, bias=False, output_size=2),
    "lru": gated_linear.lru(H),
    "lru_n5_ring": gated_linear.lru(H, state_size=5, r_min=0.5, r_max=0.99, max_phase=0.3),
    "lru_diagonal": gated_linear.lru(I, skip="diagonal"),
    "lru_noskip": gated_linear.lru(H, skip="none"),
}


@functools.cache
def _setup(cell, dtype=jnp.float64, batch=(B,), seed=0):
    """params, xs, s0: drawn in one jitted call (eager draws compile once per op and shape)."""
    return jax.jit(_draw, static_argnums=(0, 1, 2, 3))(cell, dtype, batch, seed)


def _draw(cell, dtype, batch, seed):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = cell.init(k1, I, dtype)
    # non-zero biases, so every parameter matters
    params = {k: v + 0.3 * jax.random.normal(k3, v.shape, dtype) if k == "b" else v for k, v in params.items()}
    xs = jax.random.normal(k2, (*batch, T, I), dtype)
    s0 = jax.tree.map(lambda v: jax.random.normal(k3, v.shape, dtype), cell.zero_state(batch, dtype))
    return params, xs, s0


# --- equations, transcribed directly (one example, Python loop, numpy) ---------------------------


def _g(x):
    return np.where(x >= 0, x + 0.5, 1 / (1 + np.exp(-x)))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _min_reference(cell, p, xs, h0):
    p = {k: np.asarray(v) for k, v in p.items()}
    act = {"g": _g, "linear": lambda v: v, "tanh": np.tanh}[cell.candidate]
    h, ys = np.asarray(h0), []
    for x in np.asarray(xs):
        u = x @ p["W_x"] + p.get("b", 0.0)
        if isinstance(cell, gated_linear.MinGRU):
            k, q = np.split(u, 2)
            z = _sigmoid(q)
            h = (1 - z) * h + z * act(k)
        else:
            k, pf, qi = np.split(u, 3)
            f, i = _sigmoid(pf), _sigmoid(qi)
            h = f / (f + i) * h + i / (f + i) * act(k)
        ys.append(h @ p["W_out"] if cell.output_size else h)
    return np.stack(ys)


def _lru_reference(cell, p, us, x0):
    """The paper's forward_LRU, sequentially, in complex arithmetic."""
    p = {k: np.asarray(v) for k, v in p.items()}
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    b_norm = (p["B_re"] + 1j * p["B_im"]).T * np.exp(p["gamma_log"])[:, None]  # [N, I]
    c = (p["C_re"] + 1j * p["C_im"]).T  # [H, N]
    x, ys = x0, []
    for u in np.asarray(us):
        x = lam * x + b_norm @ u
        y = (c @ x).real
        if cell.skip == "dense":
            y = y + u @ p["D"]
        elif cell.skip == "diagonal":
            y = y + p["D"] * u
        ys.append(y)
    return np.stack(ys)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_equations_match_direct_transcription(name):
    cell = VARIANTS[name]
    params, xs, s0 = _setup(cell, batch=())
    hs = gp.unroll(cell, params, xs, state0=s0)
    if isinstance(cell, gated_linear.LRU):
        ref = _lru_reference(cell, params, xs, np.asarray(s0.re) + 1j * np.asarray(s0.im))
    else:
        ref = _min_reference(cell, params, xs, s0.h)
    assert hs.shape == ref.shape
    assert _rel(hs, ref) <= 1e-13


def test_lru_ring_init():
    cell = gated_linear.lru(64, r_min=0.4, r_max=0.9, max_phase=math.pi / 10)
    p = cell.init(jax.random.key(0), I, jnp.float64)
    mod, phase = jnp.exp(-jnp.exp(p["nu_log"])), jnp.exp(p["theta_log"])
    assert bool(jnp.all((mod >= 0.4) & (mod <= 0.9)))
    assert bool(jnp.all((phase >= 0) & (phase < math.pi / 10)))
    np.testing.assert_allclose(jnp.exp(p["gamma_log"]), jnp.sqrt(1 - mod**2), rtol=1e-12)


# --- parallel == sequential --------------------------------------------------------------------


CASES = [(n, "batched") for n in sorted(VARIANTS)] + [
    (n, s) for n in ("mingru", "lru_n5_ring") for s in ("zeros", "single")
]


@pytest.mark.parametrize(("name", "state0"), CASES)
def test_parallel_equals_sequential(name, state0):
    """Outputs, states, and gradients with respect to params, xs and state0, f64 to 1e-12
    (one jitted call per case: eager associative scans are slow)."""
    cell = VARIANTS[name]
    params, xs, s0 = _setup(cell)
    s0 = {"zeros": None, "batched": s0, "single": jax.tree.map(lambda v: v[0], s0)}[state0]
    seq_f = lambda p, x, s: gp.unroll(cell, p, x, state0=s)
    par_f = lambda p, x, s: parallel_unroll(cell, p, x, s)
    w = jax.random.normal(jax.random.key(9), jax.eval_shape(seq_f, params, xs, s0).shape, xs.dtype)
    loss = lambda f: lambda p, x, s: (f(p, x, s) * w).sum()

    @jax.jit
    def run(params, xs, s0):
        states = parallel_states(cell, params, xs, s0), gp.unroll_states(cell, params, xs, state0=s0)
        grads = None if s0 is None else [jax.grad(loss(f), (0, 1, 2))(params, xs, s0) for f in (seq_f, par_f)]
        return seq_f(params, xs, s0), par_f(params, xs, s0), states, grads

    seq, par, (par_states, seq_states), grads = run(params, xs, s0)
    assert par.shape == seq.shape and par.dtype == seq.dtype
    assert _rel(par, seq) <= 1e-12
    assert _rel(par_states, seq_states) <= 1e-12
    if grads is not None:  # y_0 (the output part of s_0) is never read: both give it a zero gradient
        assert _rel(grads[1], grads[0]) <= 1e-12


def test_parallel_float32_and_jit():
    cell = gated_linear.minlstm(H)
    params, xs, s0 = _setup(cell, jnp.float32, batch=(2, 3))
    par = jax.jit(lambda p, x, s: parallel_unroll(cell, p, x, s))(params, xs, s0)
    assert par.dtype == jnp.float32 and par.shape == (2, 3, T, H)
    assert _rel(par, gp.unroll(cell, params, xs, state0=s0)) <= 1e-6


@pytest.mark.parametrize("name", ["mingru", "minlstm_nobias_proj", "lru_n5_ring"])
def test_parallel_decompose_equals_decompose(name):
    """Every part equals gp.decompose's (same bucket semantics), and sums to jax.grad, f64 ≤ 1e-12;
    every distance, and a tail bucket from distance 2 (one jitted call: eager is slow)."""
    cell = VARIANTS[name]
    params, xs, s0 = _setup(cell)
    w = jax.random.normal(jax.random.key(4), jax.eval_shape(lambda: gp.unroll(cell, params, xs)).shape, xs.dtype)
    loss = lambda hs: (jnp.tanh(hs) * w).sum()

    @jax.jit
    def both(params, xs, s0):
        out = []
        for max_distance in (None, 2):
            kw = dict(max_hops=2, state0=s0, max_distance=max_distance)
            out.append((parallel_decompose(cell, params, xs, loss, **kw), gp.decompose(cell, params, xs, loss, **kw)))
        return out, jax.grad(lambda p: loss(gp.unroll(cell, p, xs, state0=s0)))(params)

    out, grad = both(params, xs, s0)
    for max_distance, (par, ref) in zip((None, 2), out):
        assert bool(par.finite) and abs(float(par.loss - ref.loss)) <= 1e-12 * abs(float(ref.loss))
        assert _rel(par.total, grad) <= 1e-12
        n_d = T if max_distance is None else max_distance + 1
        assert jax.tree.leaves(par.by_distance)[0].shape[0] == n_d
        for part in ("by_distance", "by_step", "by_hops", "state_grads"):
            assert _rel(getattr(par, part), getattr(ref, part)) <= 1e-12, (max_distance, part)
        for part in ("by_distance", "by_step", "by_hops"):
            assert _rel(jax.tree.map(lambda g: g.sum(0), getattr(par, part)), grad) <= 1e-12, (max_distance, part)


def test_parallel_decompose_rejects_bad_options():
    cell = VARIANTS["mingru"]
    params, xs, _ = _setup(cell)
    loss = lambda hs: (hs**2).sum()
    with pytest.raises(ValueError, match="parts"):
        parallel_decompose(cell, params, xs, loss, parts=("distance_hops",))
    with pytest.raises(ValueError, match="max_distance"):
        parallel_decompose(cell, params, xs, loss, max_distance=0)


# --- edge Jacobians ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_highway_jacobian_is_diag_a(name):
    cell = VARIANTS[name]
    params, xs, s0 = _setup(cell, batch=())
    jac = gp.edge_jacobians(cell, params, xs, state0=s0)
    assert set(jac) == {"highway"} and cell.hop_edges == ()
    a_TH = jax.vmap(lambda x: cell.coefficients(params, x)[0]["highway"])(xs)
    np.testing.assert_allclose(jac["highway"], jax.vmap(jnp.diag)(a_TH), rtol=0, atol=1e-15)


def test_lru_jacobian_is_rotation_scaling():
    cell = VARIANTS["lru_n5_ring"]
    params, xs, s0 = _setup(cell, batch=())
    jac = gp.edge_jacobians(cell, params, xs, state0=s0)["highway"]  # flattened (re, im, y)
    n = cell.n
    mod, phase = jnp.exp(-jnp.exp(params["nu_log"])), jnp.exp(params["theta_log"])
    lr, li = jnp.diag(mod * jnp.cos(phase)), jnp.diag(mod * jnp.sin(phase))
    block = jnp.block([[lr, -li], [li, lr]])
    for t in range(T):
        np.testing.assert_allclose(jac[t, : 2 * n, : 2 * n], block, rtol=0, atol=1e-15)
    assert bool(jnp.all(jac[:, :, 2 * n :] == 0))  # y_{t-1} is never read


# --- constructors and errors -------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_constructor_defaults(name):
    cell = REGISTRY[name](64)
    assert cell.hidden_size == 64 and cell.edges == ("highway",) and cell.hop_edges == ()
    params = cell.init(jax.random.key(0), 8)
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(params))
    hs = gp.unroll(cell, params, jnp.ones((2, 5, 8), jnp.float32))
    assert hs.shape == (2, 5, 64) and hs.dtype == jnp.float32


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: gated_linear.mingru(0), ValueError, "hidden_size"),
        (lambda: gated_linear.minlstm("4"), TypeError, "hidden_size"),
        (lambda: gated_linear.mingru(4, candidate="relu"), ValueError, "candidate"),
        (lambda: gated_linear.minlstm(4, bias=1), TypeError, "bias"),
        (lambda: gated_linear.mingru(4, output_size=0), ValueError, "output_size"),
        (lambda: gated_linear.lru(4, r_min=0.9, r_max=0.5), ValueError, "r_min"),
        (lambda: gated_linear.lru(4, r_max=1.5), ValueError, "r_max"),
        (lambda: gated_linear.lru(4, max_phase=0.0), ValueError, "max_phase"),
        (lambda: gated_linear.lru(4, skip="full"), ValueError, "skip"),
        (lambda: gated_linear.lru(4, skip="diagonal").init(jax.random.key(0), 3), ValueError, "input_size"),
        (lambda: gated_linear.lru(4).init(jax.random.key(0), 0), ValueError, "input_size"),
    ],
)
def test_bad_configuration_raises(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_parallel_rejects_bad_input():
    cell = gated_linear.mingru(H)
    params, xs, s0 = _setup(cell)
    with pytest.raises(TypeError, match="parallel protocol"):
        parallel_unroll(gp.lstm(H), gp.lstm(H).init(jax.random.key(0), I), xs)
    with pytest.raises(ValueError, match=r"\[T, I\]"):
        parallel_unroll(cell, params, xs[0, 0])
    with pytest.raises(TypeError, match="array"):
        parallel_unroll(cell, params, [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="state0 leaf"):
        parallel_unroll(cell, params, xs, jax.tree.map(lambda v: v[:, :2], s0))
    with pytest.raises(ValueError, match="structured like"):
        parallel_unroll(cell, params, xs, (s0.h, s0.h))
