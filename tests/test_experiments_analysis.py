"""Verdict functions of the analysis experiments (C2, C3, C5, C6, C7, C9, distance_hops_map),
the exact step × hop table of c5_paths, and a tiny end-to-end run of each module."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradpaths as gp
from experiments import _common as C
from experiments import (
    c2_vanishing,
    c3_highway,
    c5_paths,
    c6_explosion,
    c7_forget_bias,
    c9_activations,
    distance_hops_map,
)

S, N, U = C.SUPPORTED, C.NOT_SUPPORTED, C.NUANCED


def _c2_row(**change):
    row = {"total_ratio": 0.9, "tail_rate": -0.3, "tail_r2": 0.99, "short_share": 1.0, "long_share": 1e-8}
    return {**row, **change}


@pytest.mark.parametrize(
    "rows, want",
    [
        ([_c2_row(), _c2_row()], S),
        ([_c2_row(), _c2_row(total_ratio=1e-3)], U),  # the total vanishes with T at one g
        ([_c2_row(tail_rate=0.1), _c2_row(tail_r2=0.2)], N),  # no exponential fall
        ([_c2_row(long_share=2.0)], N),  # long range dominates
    ],
)
def test_c2_verdict(rows, want):
    assert c2_vanishing.verdict(rows) == want


def test_c2_verdict_on_a_synthetic_profile():
    # a gradient whose tail does not fall (‖G_d‖ constant in d) must fail the criterion
    d = jnp.arange(200.0)
    flat = gp.fit_decay_rate(1.0 - d / 200.0, d_min=c2_vanishing.SHORT)
    decaying = gp.fit_decay_rate(jnp.exp(-0.5 * d), d_min=c2_vanishing.SHORT)
    row = lambda fit: _c2_row(tail_rate=float(fit.rate), tail_r2=float(fit.r2))
    assert c2_vanishing.verdict([row(decaying)]) == S
    assert c2_vanishing.verdict([row(flat)]) == N


@pytest.mark.parametrize(
    "args, want",
    [
        ((0.0, 1e-6, 0.95, 0.01), S),
        ((0.0, 1e-6, 0.95, 0.5), U),  # the highway rate moves with g too
        ((0.0, 1e-6, 0.05, 0.01), N),  # hop paths do not scale with W_h
        ((1e-2, 1e-6, 0.95, 0.01), N),  # highway Jacobian is not diag(f)
        ((0.0, 0.5, 0.95, 0.01), N),  # 0-hop adjoint does not follow Σ log f
    ],
)
def test_c3_verdict(args, want):
    assert c3_highway.verdict(*args, eps=1.2e-7, n_t=200) == want


@pytest.mark.parametrize(
    "err, sizes, shares, want",
    [
        (1e-7, [1e-9, 0.3, 0.5], [0.0, 0.8, 0.9], S),
        (1e-7, [1e-9, 0.3, 0.5], [0.0, 0.1, 0.9], U),
        (1e-7, [1e-9, 0.3, 0.5], [0.9, 0.1, 0.2], N),  # carried by many-hop paths where it survives
        (1e-7, [1e-9, 1e-8, 1e-6], [0.9, 0.9, 0.9], N),  # nothing survives
        (1e-3, [1e-9, 0.3, 0.5], [0.0, 0.8, 0.9], N),  # decomposition not exact
    ],
)
def test_c5_verdict(err, sizes, shares, want):
    assert c5_paths.verdict(err, 1e-5, sizes, shares) == want


@pytest.mark.parametrize(
    "rnn, lstm, want",
    [
        ([0.0, 0.5, 1.0], [0.0, 0.0, 1.0], S),
        ([0.1, 0.5, 0.9], [0.0, 0.2, 1.0], U),
        ([0.0, 0.5, 1.0], [0.0, 0.6, 1.0], N),
        ([0.0, 0.0], [0.0, 0.0], C.INCONCLUSIVE),
    ],
)
def test_c6_verdict(rnn, lstm, want):
    assert c6_explosion.verdict(rnn, lstm) == want


@pytest.mark.parametrize(
    "g, want", [([1e-9, 1e-5, 1e-3, 0.1], S), ([1e-9, 1e-3, 1e-4, 0.1], U), ([0.1, 1e-3, 1e-5, 1e-9], N)]
)
def test_c7_verdict(g, want):
    assert c7_forget_bias.verdict(g) == want


def _rates(sig, tanh, relu):
    return {"sigmoid": sig, "tanh": tanh, "relu": relu, "linear": 0.0}


@pytest.mark.parametrize(
    "per_gain, want",
    [
        ([_rates(-2, -1, -0.5), _rates(-1.5, -0.5, -0.1)], S),
        ([_rates(-2, -1, -0.5), _rates(-1.5, -0.1, -0.5)], U),
        ([_rates(-0.5, -1, -2), _rates(-1, -1.5, -1.2)], N),
        ([_rates(-2, float("nan"), -0.5)], N),
    ],
)
def test_c9_verdict(per_gain, want):
    assert c9_activations.verdict(per_gain) == want


@pytest.mark.parametrize("dominant, want", [([0, 0], S), ([0, 5], U), ([3, 8], N)])
def test_distance_hops_map_verdict(dominant, want):
    assert distance_hops_map.verdict(dominant) == want


@pytest.mark.parametrize(
    "fn, bad",
    [
        (c2_vanishing.verdict, ([],)),
        (c5_paths.verdict, (0.0, 1e-5, [0.1], [])),
        (c6_explosion.verdict, ([0.1], [])),
        (c7_forget_bias.verdict, ([1.0],)),
        (c9_activations.verdict, ([],)),
        (distance_hops_map.verdict, ([],)),
    ],
)
def test_verdicts_reject_empty_input(fn, bad):
    with pytest.raises(ValueError):
        fn(*bad)


def test_step_hop_table_equals_by_distance_hops_float64():
    cell = gp.lstm(3, forget_bias=0.5)

    @jax.jit
    def tables(key):
        kp, kx, kr = jax.random.split(key, 3)
        params = cell.init(kp, 2, jnp.float64)
        xs = jax.random.normal(kx, (2, 9, 2), jnp.float64)
        r = jax.random.normal(kr, (3,), jnp.float64)
        loss = lambda hs: c2_vanishing.readout_loss(hs, r, jnp.zeros(9).at[-1].set(1.0))
        d = gp.decompose(cell, params, xs, loss, max_hops=3, parts=("state", "distance_hops"))
        flat = jax.vmap(jax.vmap(lambda t: jax.flatten_util.ravel_pytree(t)[0]))(d.by_distance_hops)  # [T, K+1, P]
        ref = jax.flatten_util.ravel_pytree(jax.grad(lambda p: loss(gp.unroll(cell, p, xs)))(params))[0]
        mine = c5_paths.step_hop_grads(cell, params, xs, d.state_grads, 5, 4)
        return mine, flat, ref, c5_paths.class_stats(mine[1], ref)

    (norm_dk, long_kp, at_kp, total_p), flat, ref, stats = tables(jax.random.key(0))
    np.testing.assert_allclose(norm_dk, np.linalg.norm(flat, axis=-1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(long_kp, flat[5:].sum(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(at_kp, flat[4], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(total_p, ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(stats["proj_share"].sum(), 1.0, rtol=1e-12)
    assert np.abs(flat[5:, 1:]).max() > 0  # long range reaches the hop classes: the test is not vacuous


def test_c2_trained_row_runs_and_is_finite():
    w = c2_vanishing.total_weights((10, 20), 20, jnp.float32)
    out, w_h, loss = c2_vanishing.trained(C.Args(scale="quick", seeds=2), 8, 20, 2, w)
    assert w_h.shape == (2, 8, 8) and loss.shape == (2,)
    assert out["g_d"].shape == (2, 4, 20) and np.all(np.isfinite(out["total"]))
    assert np.all(np.isfinite(loss))


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("results")


MODULES = [c2_vanishing, c3_highway, c5_paths, c7_forget_bias, distance_hops_map, c6_explosion, c9_activations]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.NAME)
def test_end_to_end_quick(module, out_dir):
    C.setup_jax()
    outcome = module.run(C.Args(scale="quick", out=out_dir))
    assert outcome.claim == module.CLAIM and outcome.name == module.NAME
    assert outcome.verdict in C.VERDICTS
    folder = out_dir / module.NAME
    saved = json.loads((folder / "results.json").read_text())
    assert saved["verdict"] == outcome.verdict and saved["scale"] == "quick"
    assert (folder / outcome.figure).stat().st_size > 10_000
    assert outcome.verdict in (folder / "summary.md").read_text()
    if module is c5_paths:
        assert saved["data"]["max_rel_err"] <= c5_paths.TOL
