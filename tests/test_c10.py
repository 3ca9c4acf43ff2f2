"""C10: both halves' rules driven to each outcome, matched parameter counts, the highway log-norm identity, the
cached stack parameters and quick runs."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradpaths as gp
from experiments import _common as C
from experiments import _probe as P
from experiments import _train as TR
from experiments import c10_modern as M
from experiments import c10_training as TRN
from gradpaths import analysis as A
from gradpaths.cells import REGISTRY

RNG = np.random.default_rng(0)


def _logs(**means):
    noise = 0.1 * RNG.standard_normal(8)  # one draw for every arm: equal means give identical arms
    return {k: m + noise for k, m in means.items()}


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
    target = P.n_params(gp.lstm(16), 4)
    cell = P.matched(REGISTRY["mingru"], target, 4)
    near = [abs(P.n_params(REGISTRY["mingru"](h), 4) - target) for h in (cell.hidden_size - 1, cell.hidden_size + 1)]
    assert abs(P.n_params(cell, 4) - target) <= min(near)


@pytest.mark.parametrize("name", ["mingru", "minlstm", "rglru", "s6", "lru"])
def test_highway_adjoint_follows_the_sum_of_log_a(name):
    C.setup_jax()
    cell = REGISTRY[name](6)
    kp, kx, kr = jax.random.split(jax.random.key(0), 3)
    params = cell.init(kp, 3, jnp.float64)
    xs = jax.random.normal(kx, (2, 30, 3), jnp.float64)
    r = jax.random.normal(kr, (6,), jnp.float64)
    out = M.measure(cell, params, xs, r, 10)
    assert np.isnan(out["log_gap"]) if name == "lru" else out["log_gap"] < 1e-10  # the LRU's λ is complex
    loss = lambda hs: A.readout_loss(hs, r, A.last_step(30, jnp.float64))
    far = gp.decompose(cell, params, xs, loss, parts=("distance",), max_distance=10).by_distance  # bucket d ≥ 10
    want = np.linalg.norm(A.flat_lead(far)[-1]) / np.linalg.norm(A.flat_lead(far).sum(0))
    np.testing.assert_allclose(out["share"], want, rtol=1e-12)
    assert 0 < out["share"] < 1 and out["layer_time"].shape == (1, 30)


@pytest.mark.parametrize("module", [M, TRN], ids=["init", "training"])
def test_end_to_end_quick(tmp_path, module):
    C.setup_jax()
    outcome = module.run(C.Args(scale="quick", out=tmp_path))
    saved = json.loads((tmp_path / module.NAME / "results.json").read_text())
    assert outcome.verdict in C.VERDICTS and saved["verdict"] == outcome.verdict
    assert (tmp_path / module.NAME / outcome.figure).stat().st_size > 10_000


# ----------------------------------------------------------------------------- the training half

FAIL8 = [np.nan] * 8  # diverged seeds fail


@pytest.mark.parametrize(
    "ratios, want",
    [
        ({"rnn": 1.0, "lstm": 0.8, "lru": 0.01, "mingru": 0.02}, C.SUPPORTED),
        ({"rnn": 1.0, "lru": 0.75, "2×mingru": 0.78}, C.NOT_SUPPORTED),
        ({"rnn": 1.0, "lru": 0.01, "mingru": 0.78}, C.NUANCED),
        ({"rnn": 1.0, "lru": 1.0, "mlstm": 1.0}, C.NOT_SUPPORTED),  # identical to the rnn: nothing learned copy
        ({"rnn": 1.0, "lru": [0.01] * 4 + [0.8] * 4}, C.INCONCLUSIVE),  # half the seeds: undecided
        ({"rnn": 1.0, "lru": 0.01, "s6": FAIL8}, C.NUANCED),
        ({"rnn": 0.3, "lru": 0.01, "mingru": 0.01}, C.INCONCLUSIVE),  # the rnn learned: the lag decides nothing
    ],
)
def test_c10_training_verdict(ratios, want):
    noise = lambda: 1 + 0.01 * RNG.standard_normal(8)
    r = {k: np.broadcast_to(np.asarray(v, float), (8,)) * noise() for k, v in ratios.items()}
    v, parts = TRN.verdict(r)
    assert v == want
    if want == C.INCONCLUSIVE and ratios["rnn"] < TRN.AT_BASELINE:
        assert "longer lag" in parts["rnn"].reason


def test_c10_training_verdict_needs_a_highway_only_model():
    with pytest.raises(ValueError, match="highway-only"):
        TRN.verdict({"rnn": np.ones(8), "lstm": np.full(8, 0.1)})


def test_cached_stack_parameters_restore_as_tuples():
    """A 2-layer model's parameters survive the JSON point cache (lists) as the tuple pytree the stack needs."""
    cell = gp.stack([gp.mingru(3), gp.lstm(2)])
    params = cell.init(jax.random.key(0), 2)
    loaded = json.loads(json.dumps(C.to_jsonable(params)))
    back = TR.load_params(loaded, jnp.float32)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        np.testing.assert_array_equal(x, y)
