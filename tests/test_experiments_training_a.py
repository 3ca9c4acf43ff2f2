"""C6 clipping, C8 lag and C9 IRNN: every verdict driven to each outcome, helpers, tiny end-to-end runs."""

import json
import math

import numpy as np
import pytest

from experiments import _common as C
from experiments import c6_clipping, c8_lag, c9_irnn

# ----------------------------------------------------------------------------- c8 helpers


def _record(final_losses, diverged_at, baseline=1.0 / 6):
    return {"loss": [[0.2, v] for v in final_losses], "diverged_at": diverged_at, "baseline": baseline}


def test_final_ratio_marks_diverged_seeds_and_success_counts_them_as_failures():
    rec = _record([0.01, None, 0.05, 0.2], [-1, 3, 7, -1])
    r = c8_lag.final_ratio(rec)
    np.testing.assert_allclose(r[[0, 3]], [0.06, 1.2])
    assert np.isnan(r[1]) and np.isnan(r[2])  # non-finite, and diverged with a last value left
    assert c8_lag.success_rate(r) == 0.25
    assert c8_lag.median_ratio(r) == math.inf  # two of four diverged: the median is a failure


@pytest.mark.parametrize("task, T", [("copy", 100), ("copy", 200), ("adding", 20)])
def test_measured_memoryless_baseline_matches_the_formula(task, T):
    from gradpaths import tasks

    formula = tasks.make(task, T).baseline
    measured = c8_lag.memoryless_baseline(task, T, n=2048)
    assert abs(measured - formula) < 0.05 * formula


# ----------------------------------------------------------------------------- c8 verdict


def _succ(adding, copy):
    return {"adding": dict(zip(("rnn", "lstm", "gru"), adding)), "copy": dict(zip(("rnn", "lstm", "gru"), copy))}


def test_c8_verdict_supported_when_gated_cells_solve_a_lag_the_rnn_cannot_on_every_task():
    succ = _succ(([1.0, 0.0], [1.0, 1.0], [1.0, 0.75]), ([0.0], [0.5], [1.0]))
    assert c8_lag.verdict(succ, {"adding": [0.1, 1.0], "copy": [0.98]}) == C.SUPPORTED


def test_c8_verdict_nuanced_when_only_one_task_or_one_gated_cell_wins():
    one_task = _succ(([0.0], [1.0], [1.0]), ([0.5], [0.5], [0.5]))
    assert c8_lag.verdict(one_task, {"adding": [1.0], "copy": [0.4]}) == C.NUANCED
    lstm_only = {"adding": {"rnn": [0.0], "lstm": [1.0], "gru": [0.0]}}
    assert c8_lag.verdict(lstm_only, {"adding": [1.0]}) == C.NUANCED


def test_c8_verdict_not_supported_when_the_rnn_keeps_up_or_gated_cells_fail():
    rnn_keeps_up = {"adding": {"rnn": [1.0, 1.0], "lstm": [1.0, 1.0], "gru": [1.0, 1.0]}}
    assert c8_lag.verdict(rnn_keeps_up, {"adding": [0.05, 0.1]}) == C.NOT_SUPPORTED
    gated_fail = {"adding": {"rnn": [0.25], "lstm": [0.25], "gru": [0.0]}}
    assert c8_lag.verdict(gated_fail, {"adding": [0.95]}) == C.NOT_SUPPORTED


def test_c8_verdict_ignores_unsolved_tasks_and_is_inconclusive_without_any():
    unsolved_copy = _succ(([0.0], [1.0], [1.0]), ([0.0], [0.0], [0.0]))
    assert c8_lag.verdict(unsolved_copy, {"adding": [1.0], "copy": [1.0]}) == C.SUPPORTED
    nothing = {"copy": {"rnn": [0.0], "lstm": [0.0], "gru": [0.0]}}
    assert c8_lag.verdict(nothing, {"copy": [1.0]}) == C.INCONCLUSIVE


def test_c8_verdict_rejects_mismatched_input():
    with pytest.raises(ValueError, match="same tasks"):
        c8_lag.verdict({"adding": {"rnn": [0], "lstm": [1], "gru": [1]}}, {"copy": [1.0]})
    with pytest.raises(ValueError, match="one value per T"):
        c8_lag.verdict({"adding": {"rnn": [0], "lstm": [1, 1], "gru": [1]}}, {"adding": [1.0]})


# ----------------------------------------------------------------------------- c6


def _rates(rnn_off, rnn_on, lstm_off, lstm_on):
    return {
        "rnn": {"no clipping": rnn_off, "clip 1.0": rnn_on},
        "lstm": {"no clipping": lstm_off, "clip 1.0": lstm_on},
    }


def test_c6_verdict_outcomes():
    assert c6_clipping.verdict(_rates([0, 0.5, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0])) == C.SUPPORTED
    # clipping helps, but the LSTM diverges as often as the RNN
    assert c6_clipping.verdict(_rates([0, 0.5, 1], [0, 0, 0], [0, 0.5, 1], [0, 0, 0])) == C.NUANCED
    # the LSTM diverges less, but clipping makes one point worse
    assert c6_clipping.verdict(_rates([0, 0.5, 1], [0, 0.75, 0], [0, 0, 0], [0, 0, 0])) == C.NUANCED
    # clipping does not help and the LSTM is no better
    assert c6_clipping.verdict(_rates([0, 0.5, 1], [0, 0.5, 1], [0, 0.5, 1], [0, 0.5, 1])) == C.NOT_SUPPORTED
    # nothing diverges without clipping: nothing to decide
    assert c6_clipping.verdict(_rates([0, 0], [0, 0], [0, 0], [0, 0])) == C.INCONCLUSIVE


def test_c6_verdict_rejects_bad_input():
    with pytest.raises(ValueError, match="cells"):
        c6_clipping.verdict({"rnn": {"no clipping": [1], "clip 1.0": [0]}})
    with pytest.raises(ValueError, match="one rate per gain"):
        c6_clipping.verdict(_rates([1, 0], [0], [0, 0], [0, 0]))


def test_c6_diverged_counts_non_finite_and_blown_up_seeds():
    rec = _record([0.1, None, 1.5 / 6, 11.0 / 6], [-1, 2, -1, -1])  # r = 0.6, nan, 1.5, 11 > BLOWUP
    np.testing.assert_array_equal(c6_clipping.diverged(rec), [False, True, False, True])


def test_c6_at_init_reads_c6_explosion_results(tmp_path):
    args = C.Args(scale="quick", out=tmp_path)
    assert c6_clipping.at_init(args, (2.0,)) is None
    r = {
        "scale": "default",
        "config": {"T": 100, "H": 32, "gains": [1.0, 2.0, 3.0], "threshold": 1e3},
        "data": {"fraction": {"rnn": [0.0, 0.5, 1.0], "lstm": [0.0, 0.0, 0.25]}},
    }
    (tmp_path / "c6_explosion").mkdir()
    (tmp_path / "c6_explosion" / "results.json").write_text(json.dumps(r))
    got = c6_clipping.at_init(args, (1.0, 3.0))
    assert got["fraction"] == {"rnn": [0.0, 1.0], "lstm": [0.0, 0.25]}
    assert c6_clipping.at_init(args, (4.0,)) is None  # not in its grid


# ----------------------------------------------------------------------------- c9


def test_c9_verdict_outcomes():
    tanh_fail = [[1.0, 1.02, 0.98], [0.99, 1.0, 1.1]]
    assert c9_irnn.verdict([0.1, 0.2, 0.6], tanh_fail) == C.SUPPORTED
    assert c9_irnn.verdict([0.6, 0.7, 0.8], tanh_fail) == C.NUANCED  # better, not solved
    assert c9_irnn.verdict([0.1, 0.2, 0.3], [[0.1, 0.2, 0.3], [1.0, 1.0, 1.0]]) == C.NOT_SUPPORTED  # tanh as good
    assert c9_irnn.verdict([float("nan")] * 2 + [0.1], tanh_fail) == C.NOT_SUPPORTED  # diverged: median inf
    with pytest.raises(ValueError, match="per-seed"):
        c9_irnn.verdict([], tanh_fail)


# ----------------------------------------------------------------------------- end to end


def test_quick_runs_write_outputs_and_share_points(tmp_path):
    args = C.Args(scale="quick", out=tmp_path)
    (tmp_path / "c6_explosion").mkdir()
    fake = {
        "scale": "quick",
        "config": {"T": 30, "H": 8, "gains": [1.0, 4.0], "threshold": 1e3},
        "data": {"fraction": {"rnn": [0.0, 1.0], "lstm": [0.0, 0.5], "gru": [0.0, 0.5]}},
    }
    (tmp_path / "c6_explosion" / "results.json").write_text(json.dumps(fake))
    outcomes = [m.run(args) for m in (c8_lag, c9_irnn, c6_clipping)]
    for o, m in zip(outcomes, (c8_lag, c9_irnn, c6_clipping)):
        assert o.verdict == C.INCONCLUSIVE and "quick mode" in o.headline  # never SUPPORTED on 20 steps
        d = tmp_path / m.NAME
        assert (d / o.figure).exists() and (d / "summary.md").exists()
        r = json.loads((d / "results.json").read_text())
        assert r["verdict"] == o.verdict and r["claim"] == m.CLAIM
    assert "at init (c6_explosion) rnn 1.00" in outcomes[2].headline
    # c9 reused c8's tanh-RNN point instead of training it again
    assert not list((tmp_path / "c9_irnn" / "points").glob("*-rnn-*"))
    assert len(list((tmp_path / "c8_lag" / "points").glob("adding-T5-*.json"))) == 2
