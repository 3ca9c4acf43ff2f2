"""Tests for gradpaths.spectra: each checks against something computed independently."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import gradpaths as gp

H, I, T = 5, 3, 7
CELLS = {"rnn": gp.rnn(H), "lstm": gp.lstm(H), "gru": gp.gru(H), "mgu": gp.mgu(H)}


def _setup(cell, seed=0, n_t=T):
    kp, kx = jax.random.split(jax.random.key(seed))
    params = cell.init(kp, I, jnp.float64)
    params["b"] = params["b"] + 0.3 * jax.random.normal(kp, params["b"].shape, jnp.float64)
    return params, jax.random.normal(kx, (n_t, I), jnp.float64)


def _full_jacobians(cell, params, xs):
    """∂s_t/∂s_{t-1} [T, S, S] by jacfwd of cell.step on the flattened state (independent path)."""
    states = gp.unroll_states(cell, params, xs)
    s0 = cell.zero_state((), xs.dtype)
    prev = jax.tree.map(lambda z, s: jnp.concatenate([z[None], s[:-1]]), s0, states)
    _, unravel = ravel_pytree(s0)

    def jac(p, x):
        return jax.jacfwd(lambda s: ravel_pytree(cell.step(params, cell.read(unravel(s)), x))[0])(ravel_pytree(p)[0])

    return jax.jit(jax.vmap(jac))(prev, xs)


@pytest.mark.parametrize("name", CELLS)
def test_edge_jacobians_sum_to_full_step_jacobian_float64(name):
    cell = CELLS[name]
    params, xs = _setup(cell)
    jacs = jax.jit(gp.edge_jacobians, static_argnums=0)(cell, params, xs)
    assert set(jacs) == set(cell.edges)
    full = _full_jacobians(cell, params, xs)
    np.testing.assert_allclose(sum(jacs.values()), full, atol=1e-13)
    assert all(np.abs(j).max() > 1e-3 for j in jacs.values())


def test_lstm_highway_jacobian_is_diag_f_float64():
    cell = CELLS["lstm"]
    params, xs = _setup(cell, seed=1)
    jacs = gp.edge_jacobians(cell, params, xs)
    states = gp.unroll_states(cell, params, xs)
    h_prev = jnp.concatenate([jnp.zeros((1, H)), states.h[:-1]])
    _, f, _, _ = cell.gate_values(xs @ params["W_x"] + params["b"], h_prev @ params["W_h"])
    hwy, gates = jacs["highway"], jacs["gates"]
    np.testing.assert_allclose(hwy[:, H:, H:], jax.vmap(jnp.diag)(f), atol=1e-15)
    assert np.all(hwy[:, :, :H] == 0)  # the highway does not read h_{t-1}
    assert np.all(gates[:, :, H:] == 0)  # the gates edge does not read c_{t-1}


def test_batched_edge_jacobians_match_per_sequence():
    cell = CELLS["gru"]
    params, _ = _setup(cell)
    xs = jax.random.normal(jax.random.key(3), (2, T, I), jnp.float64)
    batched = gp.edge_jacobians(cell, params, xs)
    for b in range(2):
        one = gp.edge_jacobians(cell, params, xs[b])
        for k in cell.edges:
            np.testing.assert_allclose(batched[k][b], one[k], atol=1e-14)


def test_top_lyapunov_at_fixed_point_zero_is_log_spectral_radius_float64():
    n_h, n_t = 6, 3000
    cell = gp.rnn(n_h, recurrent_scale=0.8)
    params = cell.init(jax.random.key(7), 2, jnp.float64)
    params["b"] = jnp.zeros_like(params["b"])
    xs = jnp.zeros((n_t, 2), jnp.float64)
    lam = np.asarray(gp.lyapunov_exponents(cell, params, xs, 3))
    moduli = np.sort(np.abs(np.linalg.eigvals(np.asarray(params["W_h"]))))[::-1]
    # constant Jacobian W_hᵀ: exponents -> ln|eigenvalue|, with an O(1/T) transient
    assert abs(lam[0] - np.log(moduli[0])) < 5e-3
    np.testing.assert_allclose(lam, np.log(moduli[:3]), atol=2e-2)
    assert np.all(np.diff(lam) <= 0)


def _numpy_lyapunov(jacs, q0):
    q, logs = np.array(q0), []
    for j in np.asarray(jacs):
        q, r = np.linalg.qr(j @ q)
        logs.append(np.log(np.abs(np.diag(r))))
    return np.sort(np.mean(logs, axis=0))[::-1]


@pytest.mark.parametrize("edges", [None, ("highway",), ("gates",)])
def test_lyapunov_matches_numpy_reference_float64(edges):
    cell = gp.lstm(4, recurrent_scale=1.5)
    params, xs = _setup(cell, seed=2, n_t=40)
    k, key = 3, jax.random.key(11)
    lyap = jax.jit(lambda p, x: gp.lyapunov_exponents(cell, p, x, k, edges=edges, key=key))
    got = np.asarray(lyap(params, xs))
    jacs = jax.jit(gp.edge_jacobians, static_argnums=0)(cell, params, xs)
    j_sum = sum(jacs[e] for e in (edges or cell.edges))
    q0, _ = np.linalg.qr(np.asarray(jax.random.normal(key, (8, k), jnp.float64)))
    np.testing.assert_allclose(got, _numpy_lyapunov(j_sum, q0), rtol=1e-10, atol=1e-10)


def test_lyapunov_highway_only_follows_log_f():
    # the highway product is diag(Π f) on c: with k=1 the rate is the largest channel's mean log f
    cell = gp.lstm(3, forget_bias=2.0)
    params, xs = _setup(cell, seed=4, n_t=400)
    lam = gp.lyapunov_exponents(cell, params, xs, 1, edges=("highway",))
    states = gp.unroll_states(cell, params, xs)
    h_prev = jnp.concatenate([jnp.zeros((1, 3)), states.h[:-1]])
    _, f, _, _ = cell.gate_values(xs @ params["W_x"] + params["b"], h_prev @ params["W_h"])
    per_channel = jnp.log(f).mean(0)
    # the c→h block adds one step of o·tanh' at the end; over T=400 it is a 1/T correction
    assert abs(float(lam[0]) - float(per_channel.max())) < 2e-2


def test_fit_decay_rate_recovers_a_known_rate_and_ignores_zeros():
    d = jnp.arange(50.0)
    y = 3.0 * jnp.exp(-0.4 * d)
    y = y.at[10].set(0.0).at[11].set(jnp.nan).at[12].set(jnp.inf)
    fit = jax.jit(lambda v: gp.fit_decay_rate(v, d_min=2))(y)
    np.testing.assert_allclose([fit.rate, fit.intercept, fit.r2], [-0.4, np.log(3.0), 1.0], rtol=1e-10)
    assert int(fit.n) == 45
    batched = gp.fit_decay_rate(jnp.stack([y, 2 * y]), floor=1e-3)
    np.testing.assert_allclose(batched.rate, [-0.4, -0.4], rtol=1e-10)
    assert np.isnan(float(gp.fit_decay_rate(jnp.zeros(5)).rate))


def test_bad_arguments_raise():
    cell = CELLS["lstm"]
    params, xs = _setup(cell)
    with pytest.raises(ValueError, match="k must be"):
        gp.lyapunov_exponents(cell, params, xs, 11)
    with pytest.raises(ValueError, match="edges must be"):
        gp.lyapunov_exponents(cell, params, xs, 1, edges=("recurrent",))
    with pytest.raises(TypeError, match="edges must be"):
        gp.lyapunov_exponents(cell, params, xs, 1, edges="highway")
    with pytest.raises(ValueError, match="burn_in"):
        gp.lyapunov_exponents(cell, params, xs, 1, burn_in=T)
    with pytest.raises(ValueError, match="input size"):
        gp.edge_jacobians(cell, params, xs[:, :2])
    with pytest.raises(ValueError, match="distances"):
        gp.fit_decay_rate(jnp.ones(4), jnp.arange(3.0))
