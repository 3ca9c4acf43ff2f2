"""C10: the rule driven to each outcome, matched parameter counts, the highway log-norm identity and a quick run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradpaths as gp
from experiments import _common as C
from experiments import c10_modern as M
from gradpaths.cells import REGISTRY

RNG = np.random.default_rng(0)


def _logs(**means):
    return {k: m + 0.1 * RNG.standard_normal(8) for k, m in means.items()}


@pytest.mark.parametrize(
    "means, want",
    [
        ({"lstm": -20.0, "mingru": -2.0, "lru": -1.0}, C.SUPPORTED),
        ({"lstm": -2.0, "mingru": -20.0, "lru": -30.0}, C.NOT_SUPPORTED),
        ({"lstm": -5.0, "mingru": -2.0, "lru": -30.0}, C.NUANCED),
        ({"lstm": -5.0, "mingru": -5.0}, C.INCONCLUSIVE),  # identical arms
    ],
)
def test_c10_verdict(means, want):
    assert M.verdict(_logs(**means))[0] == want


def test_c10_verdict_needs_a_highway_only_cell():
    with pytest.raises(ValueError):
        M.verdict(_logs(lstm=0.0, rnn=1.0))


def test_matched_parameter_count():
    target = M.n_params(gp.lstm(16), 4)
    cell = M.matched(REGISTRY["mingru"], target, 4)
    near = [abs(M.n_params(REGISTRY["mingru"](h), 4) - target) for h in (cell.hidden_size - 1, cell.hidden_size + 1)]
    assert abs(M.n_params(cell, 4) - target) <= min(near)


@pytest.mark.parametrize("name", ["mingru", "minlstm"])
def test_highway_adjoint_follows_the_sum_of_log_a(name):
    C.setup_jax()
    cell = REGISTRY[name](6)
    kp, kx, kr = jax.random.split(jax.random.key(0), 3)
    params = cell.init(kp, 3, jnp.float64)
    xs = jax.random.normal(kx, (2, 30, 3), jnp.float64)
    r = jax.random.normal(kr, (6,), jnp.float64)
    out = M.measure(cell, params, xs, r, 10)
    assert out["log_gap"] < 1e-10
    assert 0 < out["share"] < 1 and out["layer_time"].shape == (1, 30)


def test_end_to_end_quick(tmp_path):
    C.setup_jax()
    outcome = M.run(C.Args(scale="quick", out=tmp_path))
    saved = json.loads((tmp_path / M.NAME / "results.json").read_text())
    assert outcome.verdict in C.VERDICTS and saved["verdict"] == outcome.verdict
    assert (tmp_path / M.NAME / outcome.figure).stat().st_size > 10_000
