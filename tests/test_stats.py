"""The statistics behind every training verdict: intervals, and the rule that reads them."""

import math

import numpy as np
import pytest

from experiments import _stats as S


def test_wilson_matches_known_values_and_edges():
    e = S.wilson(8, 10)  # the textbook example: 0.8, [0.490, 0.943]
    assert e.value == 0.8 and e.lo == pytest.approx(0.4902, abs=1e-3) and e.hi == pytest.approx(0.9433, abs=1e-3)
    zero, full = S.wilson(0, 8), S.wilson(8, 8)
    assert zero.lo == 0.0 and 0.3 < zero.hi < 0.35 and full.hi == 1.0 and 0.65 < full.lo < 0.7
    assert S.wilson(0, 0).n == 0
    assert S.rate([True, False, True, True]) == S.wilson(3, 4)
    with pytest.raises(ValueError):
        S.wilson(5, 4)


def test_newcombe_difference_of_rates():
    d = S.newcombe(8, 8, 0, 8)
    assert d.value == 1.0 and d.lo > 0.5 and d.hi == 1.0
    same = S.newcombe(4, 8, 4, 8)
    assert same.value == 0.0 and same.lo < 0 < same.hi
    with pytest.raises(ValueError):
        S.newcombe(0, 0, 1, 2)


def test_bootstrap_is_deterministic_and_centred():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 0.1, 16), rng.normal(0.0, 0.1, 16)
    e1, e2 = S.bootstrap_diff(a, b), S.bootstrap_diff(a, b)
    assert e1 == e2 and e1.lo < e1.value < e1.hi and e1.lo > 0.8 and e1.n == 16
    p = S.bootstrap_diff(a, a - 0.5, paired=True, stat="mean")
    assert p.value == pytest.approx(0.5) and p.lo == pytest.approx(0.5) and p.hi == pytest.approx(0.5)
    with pytest.raises(ValueError, match="finite"):
        S.bootstrap_diff([1.0, np.nan], [1.0])
    with pytest.raises(ValueError, match="same length"):
        S.bootstrap_diff([1.0, 2.0], [1.0], paired=True)
    with pytest.raises(ValueError, match="stat"):
        S.bootstrap_diff([1.0], [1.0], stat="mode")


@pytest.mark.parametrize(
    "shift, expected",
    [(1.0, S.SUPPORTED), (-1.0, S.NOT_SUPPORTED), (0.0, S.INCONCLUSIVE), (0.02, S.INCONCLUSIVE)],
)
def test_decide_each_outcome(shift, expected):
    rng = np.random.default_rng(0)
    b = rng.normal(0.0, 0.3, 8)
    a = b + shift + rng.normal(0.0, 0.3, 8)
    d = S.decide(S.bootstrap_diff(a, b), what="a − b")
    assert d.verdict == expected and d.n == 8
    if expected == S.INCONCLUSIVE:
        assert "contains 0" in d.reason
        assert d.n_needed is None or d.n_needed > 8


def test_identical_arms_are_inconclusive_never_not_supported():
    x = [0.9, 0.95, 1.0, 0.92, 0.97, 0.93, 0.99, 0.91]
    for stat in ("median", "mean"):
        for paired in (False, True):
            d = S.decide(S.bootstrap_diff(x, x, stat=stat, paired=paired))
            assert d.verdict == S.INCONCLUSIVE and d.n_needed is None
    d = S.decide(S.newcombe(3, 8, 3, 8))
    assert d.verdict == S.INCONCLUSIVE


def test_seeds_needed_scales_with_the_squared_ratio():
    assert S.seeds_needed(8, 0.1, -0.1, 0.3) == 32  # half-width 0.2 at effect 0.1: 8·4
    assert S.seeds_needed(8, 0.0, -0.1, 0.1) is None
    d = S.decide(S.Estimate(0.1, -0.1, 0.3, 8))
    assert d.n_needed == 32 and "about 32 seeds" in d.reason


def test_decide_custom_labels_and_null():
    est = S.Estimate(0.9, 0.85, 0.95, 8)
    assert S.decide(est, null=0.5, above="agree", below="disagree").verdict == "agree"
    assert S.decide(est, null=0.97, above="agree", below="disagree").verdict == "disagree"
    assert S.decide(S.Estimate(math.nan, math.nan, math.nan, 0)).verdict == S.INCONCLUSIVE


def test_decide_with_an_equivalence_margin():
    """Inside null ± margin: the set ``within`` verdict; an interval crossing the margin stays
    undecided; an interval that excludes the null still decides by its side."""
    tight = S.Estimate(0.01, -0.02, 0.03, 16)
    d = S.decide(tight, margin=0.05, what="relu − tanh")
    assert d.verdict == S.NOT_SUPPORTED and "within 0 ± 0.05" in d.reason and d.n_needed is None
    assert S.decide(tight, margin=0.05, within="equal").verdict == "equal"
    assert S.decide(tight).verdict == S.INCONCLUSIVE  # no margin: no equivalence
    assert S.decide(S.Estimate(0.01, -0.06, 0.03, 16), margin=0.05).verdict == S.INCONCLUSIVE
    assert S.decide(S.Estimate(0.02, 0.01, 0.03, 16), margin=0.05).verdict == S.SUPPORTED
    x = [0.9, 0.95, 1.0, 0.92, 0.97, 0.93, 0.99, 0.91]  # identical arms, tight: equal within the margin
    assert S.decide(S.bootstrap_diff(x, x, paired=True), margin=0.01).verdict == S.NOT_SUPPORTED


def test_combine_parts():
    sup, nsup, inc = S.SUPPORTED, S.NOT_SUPPORTED, S.INCONCLUSIVE
    assert S.combine_parts([sup, sup]) == sup
    assert S.combine_parts([nsup, nsup]) == nsup
    assert S.combine_parts([sup, nsup]) == S.NUANCED
    assert S.combine_parts([sup, inc]) == inc
    assert S.combine_parts([nsup, inc]) == inc
    with pytest.raises(ValueError):
        S.combine_parts([])


@pytest.mark.parametrize("gap, expected", [(-0.3, S.SUPPORTED), (0.3, S.NOT_SUPPORTED), (0.0, S.INCONCLUSIVE)])
def test_rate_diff_over_seeds_drives_each_outcome(gap, expected):
    """C9's ordering test: arm a decays faster (more negative rate) than arm b."""
    rng = np.random.default_rng(3)
    d = np.arange(1, 30)
    base = rng.normal(-0.6, 0.02, (8, 1))
    log_b = base * d + rng.normal(0, 0.05, (8, d.size))
    log_a = (base + gap) * d + rng.normal(0, 0.05, (8, d.size))
    est = S.rate_diff(d, log_a, log_b)
    assert est.value == pytest.approx(gap, abs=0.02)
    assert S.decide(est, above=S.NOT_SUPPORTED, below=S.SUPPORTED).verdict == expected


def test_fit_rates_skips_underflowed_points():
    d = np.arange(5.0)
    y = np.array([[0.0, -1.0, -2.0, -np.inf, -4.0], [np.nan] * 5])
    r = S.fit_rates(d, y)
    assert r[0] == pytest.approx(-1.0) and np.isnan(r[1])


def test_worst_fill():
    assert S.worst_fill([0.1, np.nan, np.inf], 1.0).tolist() == [0.1, 1.0, 1.0]


def test_agrees_and_ci_text():
    assert S.agrees(S.decide(S.Estimate(1.0, 0.5, 1.5, 8))) is True
    assert S.agrees(S.decide(S.Estimate(-1.0, -1.5, -0.5, 8))) is False
    assert S.agrees(S.decide(S.Estimate(0.0, -1.0, 1.0, 8))) is None
    assert S.Estimate(0.5, 0.25, 0.75, 8).ci() == "[0.25, 0.75]"
