"""C6 clipping, C8 lag and C9 IRNN: every rule driven to each outcome, shared training helpers, tiny end-to-end runs."""

import json

import numpy as np
import pytest

from experiments import _common as C
from experiments import _stats as S
from experiments import _train as TR
from experiments import c6_clipping, c8_lag, c9_irnn

# ----------------------------------------------------------------------------- _train helpers


def _record(final_losses, diverged_at, baseline=1.0 / 6, arms=("",)):
    n = len(final_losses) // len(arms)
    loss = [[0.2, v] for v in final_losses]
    return {"arms": list(arms), "seeds": n, "metrics": {"loss": loss}, "diverged_at": diverged_at, "baseline": baseline}


def test_final_ratio_marks_diverged_seeds_and_they_fail():
    rec = _record([0.01, None, 0.05, 0.2], [-1, 3, 7, -1])
    r = TR.final_ratio(rec)
    np.testing.assert_allclose(r[[0, 3]], [0.06, 1.2])
    assert np.isnan(r[1]) and np.isnan(r[2])
    assert TR.solved(r, 0.5).tolist() == [True, False, False, False]
    assert TR.median_ratio(r) == np.inf  # two of four diverged: the median is a failure
    s = TR.score(rec)
    assert s[1] >= 1.0 and s[2] >= 1.0  # a diverged seed scores no better than not learning


def test_arms_split_the_runs_arm_major():
    rec = _record([0.1, 0.2, 0.3, 0.4], [-1] * 4, baseline=1.0, arms=("a", "b"))
    np.testing.assert_allclose(TR.final_ratio(rec, "b"), [0.3, 0.4])


def test_config_hash_is_one_scheme_and_sees_every_field():
    a = TR.config(C.Args(), task="adding", T=10)
    b = TR.config(C.Args(), task="adding", T=11)
    import dataclasses

    assert TR.config_hash(dataclasses.asdict(a)) != TR.config_hash(dataclasses.asdict(b))
    from experiments import sweep

    assert sweep.point_name(a) == "cfg-" + TR.config_hash(dataclasses.asdict(a))


# ----------------------------------------------------------------------------- c8


def _succ(rnn, lstm, gru, n=8):
    f = lambda k: np.arange(n) < k
    return {"rnn": f(rnn), "lstm": f(lstm), "gru": f(gru)}


@pytest.mark.parametrize(
    "counts, expected",
    [
        ((0, 8, 8), S.SUPPORTED),  # both gated cells solve, the RNN does not
        ((8, 0, 0), S.NOT_SUPPORTED),  # the RNN solves, the gated cells do not
        ((0, 8, 0), S.INCONCLUSIVE),  # the GRU undecided against the RNN
        ((4, 4, 4), S.INCONCLUSIVE),  # identical arms
        ((0, 0, 0), S.INCONCLUSIVE),  # nothing solved: decides nothing
    ],
)
def test_c8_lag_decision(counts, expected):
    assert c8_lag.lag_decision(_succ(*counts))[0] == expected


def test_c8_lag_decision_nuanced_when_one_gated_cell_goes_each_way():
    succ = {"rnn": np.arange(16) < 8, "lstm": np.ones(16, bool), "gru": np.zeros(16, bool)}
    assert c8_lag.lag_decision(succ)[0] == S.NUANCED


def test_c8_a_task_that_decides_nothing_makes_the_claim_inconclusive():
    """The old rule skipped a task no cell solved and said SUPPORTED on adding alone."""
    v, per_task = c8_lag.verdict({"adding": {50: _succ(0, 8, 8)}, "copy": {10: _succ(0, 0, 0)}})
    assert per_task == {"adding": S.SUPPORTED, "copy": S.INCONCLUSIVE} and v == S.INCONCLUSIVE
    assert c8_lag.verdict({"adding": {50: _succ(0, 8, 8)}, "copy": {10: _succ(0, 8, 8)}})[0] == S.SUPPORTED
    assert c8_lag.verdict({"adding": {50: _succ(8, 0, 0)}, "copy": {10: _succ(8, 0, 0)}})[0] == S.NOT_SUPPORTED
    assert c8_lag.verdict({"adding": {50: _succ(0, 8, 8)}, "copy": {10: _succ(8, 0, 0)}})[0] == S.NUANCED


def test_c8_task_verdict_over_lags():
    assert c8_lag.task_verdict([S.INCONCLUSIVE, S.SUPPORTED]) == S.SUPPORTED
    assert c8_lag.task_verdict([S.NOT_SUPPORTED, S.NUANCED]) == S.NUANCED
    assert c8_lag.task_verdict([S.NOT_SUPPORTED, S.NOT_SUPPORTED]) == S.NOT_SUPPORTED
    assert c8_lag.task_verdict([S.NOT_SUPPORTED, S.INCONCLUSIVE]) == S.INCONCLUSIVE
    with pytest.raises(ValueError):
        c8_lag.task_verdict([])


# ----------------------------------------------------------------------------- c6


def _div(rnn_off, lstm_off, rnn_on, lstm_on, n=24):
    f = lambda k: np.arange(n) < k
    return {
        ("rnn", "no clipping"): f(rnn_off),
        ("lstm", "no clipping"): f(lstm_off),
        ("rnn", "clip 1.0"): f(rnn_on),
        ("lstm", "clip 1.0"): f(lstm_on),
    }


@pytest.mark.parametrize(
    "counts, expected",
    [
        ((20, 2, 0, 0), S.SUPPORTED),  # clipping helps, the LSTM diverges less
        ((0, 20, 20, 20), S.NOT_SUPPORTED),  # clipping makes it worse, the LSTM diverges more
        ((20, 20, 0, 0), S.INCONCLUSIVE),  # clipping helps; LSTM against RNN undecided
        ((20, 0, 24, 24), S.NUANCED),  # LSTM less, but clipping does not help
        ((0, 0, 0, 0), S.INCONCLUSIVE),  # nothing diverged: nothing for clipping to prevent
    ],
)
def test_c6_verdict_outcomes(counts, expected):
    assert c6_clipping.verdict(_div(*counts))[0] == expected


def test_c6_verdict_rejects_bad_input():
    with pytest.raises(ValueError, match="every"):
        c6_clipping.verdict({("rnn", "no clipping"): np.zeros(3, bool)})


def test_c6_at_init_reads_c6_explosion_results(tmp_path):
    args = C.Args(out=tmp_path)
    assert c6_clipping.at_init(args, (1.0,)) is None
    (tmp_path / "c6_explosion").mkdir()
    r = {"config": {"gains": [1.0, 2.0, 3.0]}, "data": {"fraction": {"rnn": [0.0, 0.5, 1.0], "lstm": [0, 0, 0.25]}}}
    (tmp_path / "c6_explosion" / "results.json").write_text(json.dumps(r))
    assert c6_clipping.at_init(args, (1.0, 3.0)) == {"rnn": [0.0, 1.0], "lstm": [0, 0.25]}
    assert c6_clipping.at_init(args, (4.0,)) is None


# ----------------------------------------------------------------------------- c9


@pytest.mark.parametrize(
    "irnn, tanh, expected",
    [(8, (0, 1), S.SUPPORTED), (0, (8, 0), S.NOT_SUPPORTED), (3, (2, 2), S.INCONCLUSIVE), (4, (4, 4), S.INCONCLUSIVE)],
)
def test_c9_verdict_outcomes(irnn, tanh, expected):
    f = lambda k: np.arange(8) < k
    assert c9_irnn.verdict(f(irnn), [f(k) for k in tanh]).verdict == expected


def test_c9_verdict_rejects_empty():
    with pytest.raises(ValueError, match="per-seed"):
        c9_irnn.verdict([], [[True]])


# ----------------------------------------------------------------------------- end to end


def test_quick_runs_write_outputs_and_share_points(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "library_version", lambda: "fixed")  # others may edit gradpaths while this runs
    args = C.Args(scale="quick", out=tmp_path)
    outcomes = [m.run(args) for m in (c8_lag, c9_irnn, c6_clipping)]
    for o, m in zip(outcomes, (c8_lag, c9_irnn, c6_clipping)):
        assert o.verdict in C.VERDICTS
        d = tmp_path / m.NAME
        assert (d / o.figure).exists() and (d / "summary.md").exists()
        r = json.loads((d / "results.json").read_text())
        assert r["verdict"] == o.verdict and r["claim"] == m.CLAIM and len(r["code_version"]) == 16
        assert all(rep.agrees in (True, False, None, C.NOT_RUN) for rep in o.reproductions)
    assert all(rep.agrees == C.NOT_RUN for rep in outcomes[1].reproductions)  # Le et al.'s T=150, 300 not run
    # c9's tanh RNN at lr 1e-2 is c8's adding point: one file, trained once
    assert len(list((tmp_path / "_points").glob("adding-T5-rnn-*.json"))) == 2  # lr 1e-2 (shared) and 2e-3


# ----------------------------------------------------------------------------- the 1997 long-lag task


def test_longlag_task_is_the_1997_noise_free_sequence():
    import jax

    from gradpaths import tasks

    task = tasks.make("longlag", 6)
    assert (task.length, task.input_size, task.output_size, task.loss) == (6, 7, 2, "ce")
    assert task.baseline == pytest.approx(np.log(2)) and task.baseline_accuracy == 0.5
    b = task.sample(jax.random.key(0), 64)
    tok = np.asarray(b.inputs).argmax(-1)  # [B, T]
    np.testing.assert_array_equal(tok[:, 1:], np.broadcast_to(np.arange(5), (64, 5)))  # a_1..a_{p-1} in order
    first = tok[:, 0] - 5  # x = 5 -> 0, y = 6 -> 1
    assert set(first.tolist()) == {0, 1}
    np.testing.assert_array_equal(np.asarray(b.targets)[:, -1], first)  # the last element equals the first
    np.testing.assert_array_equal(np.asarray(b.mask).sum(1), 1.0)
    with pytest.raises(ValueError):
        tasks.make("longlag", 1)
