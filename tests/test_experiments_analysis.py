"""The rules of the at-initialisation experiments (C2, C3, C5, C6, C7, C9, distance_hops_map), each driven to
every outcome with synthetic measurements, and a tiny end-to-end run of each module."""

import json

import numpy as np
import pytest

from experiments import _common as C
from experiments import _probe as P
from experiments import _stats as S
from experiments import (
    c2_vanishing,
    c3_highway,
    c5_paths,
    c6_explosion,
    c7_forget_bias,
    c9_activations,
    distance_hops_map,
)

SUP, NOT, NUA, INC = C.SUPPORTED, C.NOT_SUPPORTED, C.NUANCED, C.INCONCLUSIVE
E = lambda v, lo, hi, n=8: S.Estimate(v, lo, hi, n)
RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "cases, want",
    [([SUP, SUP], SUP), ([NOT, NOT], NOT), ([SUP, NOT, INC], NUA), ([SUP, INC], INC), ([INC, NOT], INC)],
)
def test_cases(cases, want):
    assert P.cases(cases) == want


def _c2_case(ratio=0.9, tail_rate=-0.3, long=1e-8, noise=1e-3, n=8, n_t=200):
    d = np.arange(n_t)
    tail = np.exp(tail_rate * d)[None] * (1 + noise * RNG.standard_normal((n, n_t)))
    total = np.ones((n, 5)) * np.linspace(1, ratio, 5)
    return {"total_last": total * (1 + noise * RNG.random((n, 1))), "tail": tail, "g_d": tail,
            "short": 0.9 + noise * RNG.random(n), "long": long + noise * RNG.random(n) * long,
            "log_rho": np.zeros(n), "lyap": np.zeros(n)}  # fmt: skip


@pytest.mark.parametrize(
    "change, want",
    [
        ({}, SUP),
        ({"ratio": 1e-3}, NOT),  # the total vanishes with T
        ({"tail_rate": 0.0}, NOT),  # the long-range share does not fall
        ({"long": 2.0}, NOT),  # long range dominates
        ({"ratio": 0.5, "noise": 0.5, "n": 3}, INC),  # the ratio's interval straddles 0.5
    ],
)
def test_c2_case(change, want):
    fl = 1e-300
    assert c2_vanishing.case(_c2_case(**change), fl)["verdict"] == want


@pytest.mark.parametrize(
    "exact, hop, hwy, q, want",
    [
        (True, E(1.0, 0.9, 1.1), E(0.01, -0.02, 0.04), E(0.01, -0.02, 0.04), SUP),  # no detectable highway change
        (True, E(1.0, 0.9, 1.1), E(0.05, 0.04, 0.06), E(0.05, 0.04, 0.06), NUA),  # moves, ≤ 1/10 of the hop paths
        (True, E(1.0, 0.9, 1.1), E(0.5, 0.4, 0.6), E(0.5, 0.4, 0.6), NOT),  # moves like the hop paths
        (True, E(1.0, 0.9, 1.1), E(0.1, 0.05, 0.15), E(0.1, 0.05, 0.15), INC),  # q straddles 0.1
        (True, E(0.1, 0.0, 0.2), E(0.0, -0.1, 0.1), E(0.0, -1, 1), NOT),  # hop paths do not scale with W_h
        (True, E(0.5, 0.2, 0.9), E(0.0, -0.1, 0.1), E(0.0, -1, 1), INC),  # hop slope straddles 0.5
        (False, E(1.0, 0.9, 1.1), E(0.0, -0.1, 0.1), E(0.0, -0.1, 0.1), NOT),  # not exact
    ],
)
def test_c3_verdict(exact, hop, hwy, q, want):
    assert c3_highway.verdict(exact, hop, hwy, q).verdict == want


def test_c3_slopes_per_seed():
    rates = np.log(np.asarray(c3_highway.GAINS))[None] * np.asarray([[1.0], [0.5]]) - 0.3
    np.testing.assert_allclose(c3_highway.slopes(rates), [1.0, 0.5])


@pytest.mark.parametrize(
    "err, sizes, shares, want",
    [
        (1e-15, [E(1e-9, 1e-10, 1e-8), E(0.3, 0.2, 0.4)], [E(0, -1, 1), E(0.8, 0.7, 0.9)], SUP),
        (1e-15, [E(0.3, 0.2, 0.4), E(0.3, 0.2, 0.4)], [E(0.1, 0.0, 0.2), E(0.8, 0.7, 0.9)], NUA),
        (1e-15, [E(0.3, 0.2, 0.4), E(0.3, 0.2, 0.4)], [E(0.1, 0.0, 0.2), E(0.2, 0.1, 0.3)], NOT),
        (1e-15, [E(0.3, 0.2, 0.4)], [E(0.5, 0.2, 0.8)], INC),  # the share straddles 0.5
        (1e-15, [E(1e-6, 1e-7, 1e-5)], [E(0.9, 0.8, 1.0)], NOT),  # nothing survives
        (1e-3, [E(0.3, 0.2, 0.4)], [E(0.8, 0.7, 0.9)], NOT),  # decomposition not exact
    ],
)
def test_c5_verdict(err, sizes, shares, want):
    assert c5_paths.verdict(err, sizes, shares).verdict == want


@pytest.mark.parametrize(
    "rnn, lstm, want",
    [
        ([0, 30, 64], [0, 0, 64], SUP),
        ([0, 30, 10], [0, 0, 40], NUA),
        ([0, 0, 20], [0, 30, 20], NOT),
        ([0, 3, 64], [0, 2, 64], INC),  # identical or too close to separate
    ],
)
def test_c6_verdict(rnn, lstm, want):
    assert c6_explosion.verdict(rnn, lstm, 64)[0] == want


def _biases(log_means, noise=0.05, n=8):
    return np.exp(np.asarray(log_means)[None] + noise * RNG.standard_normal((n, len(log_means))))


@pytest.mark.parametrize(
    "log_means, noise, want",
    [
        ([-20, -10, -5, -2], 0.05, SUP),
        ([-20, -10, -12, -2], 0.05, NUA),  # one fall, but the last is above the first
        ([-2, -5, -10, -20], 0.05, NOT),
        ([-5, -5, -5, -5], 0.05, INC),  # identical arms
        ([-20, -10, -9.9, -2], 3.0, INC),  # too noisy to tell a step
    ],
)
def test_c7_verdict(log_means, noise, want):
    assert c7_forget_bias.verdict(_biases(log_means, noise))[0].verdict == want


def _rates(sig, tanh, relu, noise=0.01, n=16):
    base = RNG.standard_normal(n) * 0.2  # shared per seed: the arms are paired
    out = {a: m + base + noise * RNG.standard_normal(n) for a, m in zip(("sigmoid", "tanh", "relu"), (sig, tanh, relu))}
    return {**out, "linear": base}


@pytest.mark.parametrize(
    "per_gain, want",
    [
        ([(-2, -1, -0.5), (-1.5, -0.5, -0.1)], SUP),
        ([(-2, -1, -0.5), (-1.5, -0.1, -0.5)], NUA),
        ([(-0.5, -1, -2), (-1, -1.5, -1.2)], NOT),
        ([(-2, -1, -1.0), (-1.5, -0.5, -0.1)], NUA),  # tanh and relu equal within the margin at one g
        ([(-2, -1, -1.0, 0.3), (-1.5, -0.5, -0.1)], INC),  # equal but too noisy to tell: seeds needed
    ],
)
def test_c9_verdict(per_gain, want):
    states = [c9_activations.at_gain(_rates(*r))[0] for r in per_gain]
    assert c9_activations.verdict(states) == want


def test_c9_equal_rates_are_named_as_such():
    state, parts = c9_activations.at_gain(_rates(-2, -1, -1.0))
    assert state == "fails (equal rates)" and parts[1].verdict == c9_activations.EQUAL
    assert "± 0.05" in parts[1].reason and parts[0].verdict == SUP


@pytest.mark.parametrize(
    "largest, want",
    [
        ([[True] * 8, [True] * 8], SUP),
        ([[True] * 8, [False] * 8], NUA),
        ([[False] * 8], NOT),
        ([[True, False] * 4], INC),
    ],
)
def test_distance_hops_map_verdict(largest, want):
    assert distance_hops_map.verdict(largest)[0] == want


@pytest.mark.parametrize(
    "fn, bad",
    [
        (P.cases, ([],)),
        (c5_paths.verdict, (0.0, [E(0.1, 0, 1)], [])),
        (c6_explosion.verdict, ([1], [], 8)),
        (c7_forget_bias.verdict, (np.ones((4, 1)),)),
        (distance_hops_map.verdict, ([],)),
    ],
)
def test_verdicts_reject_empty_input(fn, bad):
    with pytest.raises(ValueError):
        fn(*bad)


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


def test_c2_trained_row_runs_and_is_finite():
    C.setup_jax()
    out, mse, base, _ = c2_vanishing.trained(C.Args(scale="quick", seeds=2), 8, 20, 2, (10, 20))
    assert out["g_d"].shape == (2, 20) and np.all(np.isfinite(out["total_last"]))
    assert mse.shape == (2,) and np.all(np.isfinite(mse)) and base == pytest.approx(1 / 6, rel=1e-3)
