"""The published-setting rows that run only at ``--scale full``, driven both ways with a stand-in for training.

Each row's own code runs (its configs, its arms, its decision); only ``_train.train`` is replaced
by records whose final loss / baseline per (config, arm) the test sets, so a row that could
never say "disagree" fails here.
"""

import numpy as np
import pytest

from experiments import _common as C
from experiments import _train as TR
from experiments import c7_forget_training, c8_lag, c9_irnn, hdetach
from gradpaths import train as gt

FULL = C.Args(scale="full")


def fake_train(ratio):
    """A ``_train.train`` whose runs fall from the baseline to ``ratio(cfg, arm)`` × baseline over 4 segments."""

    def train(args, cfg, seeds, *, arms=("",), init=None, per_run=(), keep_params=False):
        rng = np.random.default_rng(0)
        curves = [
            np.linspace(1.0, ratio(cfg, a), 4) * (1 + 0.01 * rng.standard_normal(4)) for a in arms for _ in range(seeds)
        ]
        loss = np.array(curves)
        metrics = {f: np.zeros_like(loss) for f in gt.Metrics._fields if f != "step"} | {"loss": loss}
        return {"config": cfg, "arms": list(arms), "seeds": seeds, "steps": np.arange(1, 5) * cfg.segment,
                "baseline": 1.0, "metrics": metrics, "diverged_at": np.full(len(loss), -1)}  # fmt: skip

    return train


def rows_with(monkeypatch, ratio, make_rows):
    monkeypatch.setattr(TR, "train", fake_train(ratio))
    return make_rows()


@pytest.mark.parametrize("good, want", [(True, True), (False, False)])
def test_arjovsky_copy_rows(monkeypatch, good, want):
    sz = c8_lag.sizes(FULL)
    lstm = 0.1 if good else 1.3  # the LSTM below 10 ln 8 / (T + 20), or not
    rows = rows_with(
        monkeypatch, lambda cfg, a: lstm if cfg.cell == "lstm" else 1.0, lambda: c8_lag._arjovsky_rows(FULL, sz)
    )
    assert [r.agrees for r in rows] == [want, want] and "T=100" in rows[0].setting and "T=200" in rows[1].setting
    assert "RMSProp 1e-3, batch 20" in rows[0].setting


@pytest.mark.parametrize("good, want", [(True, True), (False, False)])
def test_hochreiter_schmidhuber_long_lag_row(monkeypatch, good, want):
    seen = []

    def ratio(cfg, a):
        seen.append((cfg.task, cfg.T, cfg.cell, cfg.forget_gate))
        return (0.05 if cfg.cell == "lstm" else 1.0) if good else (1.0 if cfg.cell == "lstm" else 0.05)

    row = rows_with(monkeypatch, ratio, lambda: c8_lag._longlag_row(FULL, c8_lag.sizes(FULL)))
    assert row.agrees is want
    assert ("longlag", 100, "lstm", False) in seen  # the 1997 cell: no forget gate


@pytest.mark.parametrize("good, want", [(True, True), (False, False)])
def test_hdetach_paper_rows(monkeypatch, good, want):
    fast, slow = 0.2, 0.7
    ratio = lambda cfg, a: (fast if a == "p=0.5" else slow) if good else (slow if a == "p=0.5" else fast)
    for T in hdetach.PAPER["T"]:
        row = rows_with(monkeypatch, ratio, lambda T=T: hdetach._paper_row(FULL, T))
        assert row.agrees is want and f"copy T={T}, hidden 128" in row.setting


@pytest.mark.parametrize("good, want", [(True, True), (False, False)])
def test_chrono_copy_500_row(monkeypatch, good, want):
    ratio = lambda cfg, a: (0.2 if a == "chrono" else 0.8) if good else (0.8 if a == "chrono" else 0.2)
    row = rows_with(monkeypatch, ratio, lambda: c7_forget_training._chrono_row(FULL))
    assert row.agrees is want and "copy T=500" in row.setting


@pytest.mark.parametrize("good, want", [(True, True), (False, False)])
def test_le_irnn_adding_rows(monkeypatch, good, want):
    sz = c9_irnn.sizes(FULL)
    ratio = lambda cfg, a: (0.05 if cfg.cell == "irnn" else 1.0) if good else (1.0 if cfg.cell == "irnn" else 0.05)
    for T in c9_irnn.LE_T:
        row = rows_with(monkeypatch, ratio, lambda T=T: c9_irnn._le_row(FULL, sz, T))
        assert row.agrees is want and row.setting.startswith(f"T={T}, H=100")


def test_rows_below_full_scale_are_not_run():
    args = C.Args(scale="default")
    assert all(r.agrees == C.NOT_RUN for r in c8_lag._arjovsky_rows(args, c8_lag.sizes(args)))
    assert c8_lag._longlag_row(args, c8_lag.sizes(args)).agrees == C.NOT_RUN
    assert hdetach._paper_row(args, 100).agrees == C.NOT_RUN
    assert c7_forget_training._chrono_row(args).agrees == C.NOT_RUN
    assert c9_irnn._le_row(args, c9_irnn.sizes(args), 150).agrees == C.NOT_RUN
