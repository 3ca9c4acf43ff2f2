"""Training experiments: C7 forget bias in training, C7 selective forgetting, h-detach, paths during training.

Each verdict function is driven to every outcome with synthetic data; the measurements
are checked on hand-built networks; each module runs end to end at quick scale.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradpaths as gp
from experiments import _common as C
from experiments import _stats as S
from experiments import _train as TR
from experiments import c7_forget_training as FT
from experiments import c7_selective as SEL
from experiments import hdetach as HD
from experiments import paths_training as PT
from gradpaths import tasks
from gradpaths import train as gt

RNG = np.random.default_rng(0)


def _scores(medians, spread=0.01, n=8):
    """n seeds around each median (the same offsets: paired arms)."""
    return [m + spread * np.linspace(-1.5, 1.5, n) for m in medians]


# ------------------------------------------------------------------ c7_forget_training

SOLVED = [np.ones(8, bool)] * 4


@pytest.mark.parametrize(
    "medians, solved, expected",
    [
        ([0.9, 0.5, 0.3, 0.1], SOLVED, S.SUPPORTED),  # larger bias, faster
        ([0.9, 0.1, 0.3, 0.5], SOLVED, S.NUANCED),  # best at an intermediate bias
        ([0.5, 0.5, 0.5, 0.5], SOLVED, S.INCONCLUSIVE),  # identical arms: never NOT SUPPORTED
        ([0.1, 0.3, 0.5, 0.9], SOLVED, S.NOT_SUPPORTED),  # smaller bias, faster
        ([0.9, 0.5, 0.3, 0.1], [np.zeros(8, bool)] * 4, S.INCONCLUSIVE),  # never solved
    ],
)
def test_forget_training_verdict(medians, solved, expected):
    assert FT.verdict(_scores(medians), solved)[0] == expected


def test_forget_training_chrono_alone_does_not_lift_the_sweep():
    """run() passes the point biases only; chrono solving in every seed is not among them."""
    scores = _scores([0.9, 0.5, 0.3, 0.1])
    v, d = FT.verdict(scores, [np.zeros(8, bool)] * 4)
    assert v == S.INCONCLUSIVE and "point bias" in d.reason
    assert FT.SETTINGS[-1] == "chrono" and len(FT.BIASES) == len(FT.SETTINGS) - 1


def test_forget_training_verdict_rejects_one_bias():
    with pytest.raises(ValueError, match="two or more"):
        FT.verdict(_scores([0.5]), [np.ones(8, bool)])


def test_bias_vectors_point_and_chrono():
    b = TR.bias_vectors("b_f=2", 3, 2, jnp.float64)
    assert b.shape == (2, 12)
    np.testing.assert_array_equal(b[:, 3:6], 2.0)
    np.testing.assert_array_equal(b[:, :3], 0.0)
    c = TR.bias_vectors("chrono", 3, 2, jnp.float64, chrono_T=20)
    np.testing.assert_array_equal(c[:, :3], -c[:, 3:6])  # b_i = -b_f
    assert float(c[:, 3:6].min()) >= 0.0 and float(c[:, 3:6].max()) <= np.log(19)
    assert not np.allclose(c[0], c[1])  # drawn per seed
    with pytest.raises(ValueError, match="chrono"):
        TR.bias_vectors("bias 2", 3, 2, jnp.float64)


def test_start_from_bias_equals_the_trainer_of_that_bias():
    cfg0 = gt.TrainConfig(
        task="adding", T=4, hidden_size=3, recurrent_init="gaussian", forget_bias=0.0, steps=2, segment=2
    )
    cfg2 = dataclasses.replace(cfg0, forget_bias=2.0)
    key = jax.random.key(3)
    b = TR.bias_vectors("b_f=2", 3, 1, jnp.float32)[0]
    mine = jax.jit(TR.start_from_bias(gt.make_trainer(cfg0)))(key, b)
    ref = jax.jit(gt.make_trainer(cfg2).init)(key)
    for x, y in zip(jax.tree.leaves((mine.params, mine.opt_state)), jax.tree.leaves((ref.params, ref.opt_state))):
        np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------ c7_selective


@pytest.mark.parametrize(
    "acc, drop, block, expected",
    [
        (1.0, 0.1, 0.05, S.SUPPORTED),
        (1.0, 0.95, 0.9, S.NOT_SUPPORTED),  # solved without touching f at "but"
        (1.0, 0.9, 0.3, S.NUANCED),  # each half for what it is: f not cut, gradient blocked
        (1.0, 0.5, 0.05, S.INCONCLUSIVE),  # the f half straddles the cut
        (0.6, 0.1, 0.05, S.INCONCLUSIVE),  # not solved
    ],
)
def test_selective_verdict(acc, drop, block, expected):
    v, halves = SEL.verdict(*_scores([acc, drop, block], spread=0.02))
    assert v == expected
    if expected == S.NUANCED:
        assert halves["f drops at 'but'"].verdict == S.NOT_SUPPORTED
        assert halves["gradient blocked at 'but'"].verdict == S.SUPPORTED


def test_selective_verdict_leaves_out_non_finite_seeds_and_rejects_bad_accuracy():
    v, halves = SEL.verdict([1.0, 1.0], [float("nan")] * 2, [0.1, 0.1])
    assert v == S.INCONCLUSIVE and "no seed" in halves["f drops at 'but'"].reason
    with pytest.raises(ValueError, match="accuracy"):
        SEL.verdict([float("nan")], [0.1], [0.1])


@pytest.fixture(scope="module")
def selective_setup():
    task = tasks.make("selective", 8)
    cell = gp.lstm(4, recurrent_init="gaussian", forget_bias=0.0)
    shapes = cell.param_shapes(tasks.SELECTIVE_VOCAB)
    p = {k: jnp.asarray(RNG.normal(size=s) / np.sqrt(s[0])) for k, s in shapes.items()}
    ro = {"W": jnp.asarray(RNG.normal(size=(4, 2))), "b": jnp.zeros(2)}
    batch = jax.jit(task.sample, static_argnums=1)(jax.random.key(1), 16)
    jitted = jax.jit(SEL.analyse, static_argnums=(0, 2))
    analyse = lambda q: jitted(cell, q, task, batch.inputs.astype(jnp.float64), batch)
    return cell, p, ro, analyse


@pytest.mark.parametrize("push, cut", [(-30.0, True), (30.0, False)])
def test_selective_measures_a_forget_gate_wired_to_but(selective_setup, push, cut):
    """W_x's "but" row drives f to 0 (cut) or 1 (kept) at "but": the measures must follow."""
    cell, p, ro, analyse = selective_setup
    n_h = cell.hidden_size
    w_x = p["W_x"].at[tasks.BUT, n_h : 2 * n_h].set(push)
    m = analyse({"cell": {**p, "W_x": w_x}, "readout": ro})
    if cut:
        assert float(m["f_but"]) < 1e-6 and float(m["block"]) < 1e-6
    else:
        assert float(m["f_but"]) > 1 - 1e-6 and float(m["f_but"]) > float(m["f_else"])
        assert float(m["block"]) > 1.0  # transmission at "but" beats the typical step
    assert m["f_example"].shape == (8, n_h)


# ------------------------------------------------------------------ hdetach


@pytest.mark.parametrize(
    "medians, final, expected",
    [
        ([0.8, 0.5, 0.4], [0.5, 0.3, 0.2], S.SUPPORTED),
        ([0.5, 0.5, 0.5], [0.3, 0.3, 0.3], S.INCONCLUSIVE),  # identical arms: not NOT SUPPORTED
        ([0.5, 0.7, 0.8], [0.3, 0.5, 0.6], S.NOT_SUPPORTED),  # h-detach slows training
        ([0.5, 0.3, 0.8], [0.3, 0.2, 0.6], S.NUANCED),
        ([1.0, 0.9, 0.8], [1.0, 0.95, 0.92], S.INCONCLUSIVE),  # nothing learned
        ([0.95, 1.0, 1.05], [0.97, 0.8, 1.0], S.INCONCLUSIVE),  # p = 0 has not learned: no reference
    ],
)
def test_hdetach_verdict(medians, final, expected):
    assert HD.verdict(_scores(medians), final)[0] == expected


def test_hdetach_verdict_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="p = 0"):
        HD.verdict(_scores([0.5, 0.4]), [0.3])


def test_hdetach_estimator_matches_the_identity_and_has_no_variance_at_p0():
    cell = gp.lstm(3)
    params = cell.init(jax.random.key(0), 2, jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (2, 4, 2), jnp.float64)
    out = HD.estimator_stats(cell, params, xs, lambda hs: jnp.sum(hs**2), (0.0, 0.5), jax.random.key(2), n_masks=256)
    assert out["p=0"]["rel_var"] < 1e-20 and out["p=0"]["cos_E_G"] == pytest.approx(1.0)
    assert out["p=0.5"]["rel_var"] > 1e-6 and out["p=0.5"]["mean_error"] < 0.5
    assert sum(out["hop_share"]) >= 1.0 - 1e-9  # norms of parts that sum to G


# ------------------------------------------------------------------ paths_training


@pytest.mark.parametrize(
    "lr_lstm, lr_rnn, hw1, hw0, final, expected",
    [
        (0.5, 0.01, 0.8, 0.4, 0.1, S.SUPPORTED),
        (0.5, 0.01, 0.4, 0.4, 0.1, S.INCONCLUSIVE),  # identical highway arms
        (0.5, 0.01, 0.4, 0.8, 0.1, S.NUANCED),
        (0.01, 0.5, 0.4, 0.8, 0.1, S.NOT_SUPPORTED),
        (np.nan, 0.5, 0.4, 0.8, 0.1, S.INCONCLUSIVE),  # never probed
        (0.5, 0.01, 0.8, 0.4, 0.9, S.INCONCLUSIVE),  # the LSTM did not learn
    ],
)
def test_paths_training_verdict(lr_lstm, lr_rnn, hw1, hw0, final, expected):
    assert PT.verdict(*_scores([lr_lstm, lr_rnn, hw1, hw0]), final)[0] == expected


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def quick_out(tmp_path_factory):
    return tmp_path_factory.mktemp("quick")


@pytest.mark.parametrize("module", [FT, PT, SEL, HD], ids=lambda m: m.NAME)
def test_module_runs_end_to_end_at_quick_scale(module, quick_out):
    args = C.Args(scale="quick", out=quick_out)
    o = module.run(args)
    assert o.claim == module.CLAIM and o.name == module.NAME and o.verdict in C.VERDICTS
    d = quick_out / module.NAME
    r = json.loads((d / "results.json").read_text())
    assert r["verdict"] == o.verdict and r["scale"] == "quick"
    assert (d / o.figure).stat().st_size > 0 and (d / "summary.md").exists()
    for rep in o.reproductions:
        assert rep.agrees in (True, False, None, C.NOT_RUN) and rep.measured
