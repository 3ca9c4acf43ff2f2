"""gradpaths.analysis: each reduction against a direct computation or a decomposition part, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradpaths as gp
from gradpaths import analysis as A


@pytest.fixture(scope="module")
def lstm_case():
    cell = gp.lstm(3, forget_bias=0.5)
    kp, kx, kr = jax.random.split(jax.random.key(0), 3)
    params = cell.init(kp, 2, jnp.float64)
    xs = jax.random.normal(kx, (2, 9, 2), jnp.float64)
    r = jax.random.normal(kr, (3,), jnp.float64)
    return cell, params, xs, r


def test_readout_loss_is_the_batch_mean_of_weighted_projections():
    hs = jax.random.normal(jax.random.key(1), (2, 4, 3), jnp.float64)
    r, w = jnp.arange(3.0), jnp.asarray([0.0, 1.0, 0.5, 2.0])
    want = sum(w[t] * hs[b, t] @ r for b in range(2) for t in range(4)) / 2
    np.testing.assert_allclose(A.readout_loss(hs, r, w), want, rtol=1e-14)
    np.testing.assert_array_equal(A.last_step(4), [0, 0, 0, 1])


def test_last_step_by_step_read_backwards_is_by_distance(lstm_case):
    cell, params, xs, r = lstm_case
    d = gp.decompose(
        cell, params, xs, lambda hs: A.readout_loss(hs, r, A.last_step(9, xs.dtype)), parts=("step", "distance")
    )
    np.testing.assert_allclose(A.by_distance_last_step(d.by_step), A.flat_lead(d.by_distance), rtol=1e-12, atol=1e-15)
    assert A.flat_lead(d.total, 0).shape == (A.flat_lead(d.by_step).shape[1],)


def test_band_and_tail_shares_on_a_known_table():
    g_DP = jnp.asarray([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]])  # ‖g‖ = 5
    np.testing.assert_allclose(A.band_share(g_DP, 0, 1), 0.6)
    np.testing.assert_allclose(A.band_share(g_DP, 1, 3), 0.8)
    np.testing.assert_allclose(A.tail_shares(g_DP), [0.8, 0.0, 0.0])


def test_hop_class_stats():
    g_KP = jnp.asarray([[2.0, 0.0], [1.0, 0.0], [-1.0, 1.0]])  # G = (2, 1)
    s = A.hop_class_stats(g_KP, jnp.asarray([4.0, 3.0]))
    np.testing.assert_allclose(s["proj_share"].sum(), 1.0, rtol=1e-14)
    np.testing.assert_allclose(s["proj_share"], [0.8, 0.4, -0.2])
    np.testing.assert_allclose(s["size"], np.sqrt(5) / 5)
    np.testing.assert_allclose(s["cos_highway_rest"], 0.0, atol=1e-15)  # (0, 1) against (2, 0)
    aligned = A.hop_class_stats(jnp.asarray([[1.0, 1.0], [2.0, 2.0]]), jnp.ones(2))
    np.testing.assert_allclose(aligned["cancellation"], 1.0)
    np.testing.assert_allclose(aligned["mean_hops"], 2 / 3)


def test_highway_prediction_is_the_product_of_the_highway():
    log_a = jnp.log(jnp.full((5, 2), 0.5))
    lam = jnp.asarray([1.0, -2.0])
    pred = A.highway_log_prediction(log_a, lam)  # s = 0..3: 0.5^(3-s) λ
    np.testing.assert_allclose(pred, (0.5 ** jnp.arange(3, -1, -1.0))[:, None] * lam, rtol=1e-14)


def test_highway_prediction_matches_the_lstm_zero_hop_adjoint(lstm_case):
    cell, params, xs, r = lstm_case
    hs = gp.unroll(cell, params, xs)
    h_prev = jnp.concatenate([jnp.zeros_like(hs[:, :1]), hs[:, :-1]], axis=1)
    f = cell.gate_values(xs @ params["W_x"] + params["b"], h_prev @ params["W_h"])[1]
    d = gp.decompose(
        cell, params, xs, lambda h: A.readout_loss(h, r, A.last_step(9, xs.dtype)), max_hops=1, parts=("state",)
    )
    lam0 = d.state_grads.c[:, 0]  # [T, B, H]
    pred = A.highway_log_prediction(jnp.log(jnp.swapaxes(f, 0, 1)), lam0[7])
    np.testing.assert_allclose(pred, lam0[:8], rtol=1e-12, atol=1e-300)
    gap = A.max_log_gap(
        jnp.linalg.norm(lam0[:8], axis=-1), jnp.linalg.norm(pred, axis=-1), A.underflow_floor(jnp.float64)
    )
    assert gap < 1e-12


def test_max_log_gap_ignores_underflow():
    fl = A.underflow_floor(jnp.float32)
    assert A.max_log_gap(jnp.asarray([1.0, 0.0]), jnp.asarray([np.e, 5.0]), fl) == pytest.approx(1.0)
    assert fl > float(jnp.finfo(jnp.float32).tiny)
