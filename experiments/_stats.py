"""Statistics for verdicts: intervals over seeds and one rule that turns an interval into a verdict.

Pure functions of arrays; no I/O. Every training verdict goes through ``decide``:

- an *effect* is a number whose sign says which way the claim goes (e.g. the RNN's
  score minus the LSTM's, positive when the LSTM trains better), with a 95% interval;
- SUPPORTED (or the verdict named for the positive side) only when the whole interval
  lies above the null, NOT SUPPORTED only when it lies wholly below; otherwise
  INCONCLUSIVE, with the reason and an estimate of the seeds that would separate the
  arms at the observed effect:

.. math::

    n_\\text{needed} ≈ n \\left(\\frac{w}{|\\hat e - e_0|}\\right)^2,\\qquad w = \\text{half-width of the interval}

(the half-width shrinks as 1/√n). Identical arms give an interval around the null, so
INCONCLUSIVE, never NOT SUPPORTED, unless a rule sets an equivalence ``margin`` in advance:
an interval wholly inside null ± margin then decides that the arms are equal (the two
one-sided tests of an equivalence test, at the same 95% interval).

Intervals:

- ``wilson``: the Wilson score interval of a success rate k/n;
- ``newcombe``: the difference of two success rates (Newcombe's hybrid score interval,
  from the two Wilson intervals);
- ``bootstrap_diff``: the difference of medians (or means) of two arms, percentile
  bootstrap with a fixed seed (deterministic); ``paired=True`` resamples per-seed
  differences, for arms that share their seeds;
- ``rate_diff``: the difference of fitted decay rates (slope of log ‖G_d‖ against d)
  between two arms over seeds, for C9.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

SUPPORTED, NOT_SUPPORTED, NUANCED, INCONCLUSIVE = "SUPPORTED", "NOT SUPPORTED", "NUANCED", "INCONCLUSIVE"
Z95 = 1.959963984540054
N_BOOT = 4000
BOOT_SEED = 0


class Estimate(NamedTuple):
    """A point estimate with its 95% interval and the sample size behind it."""

    value: float
    lo: float
    hi: float
    n: int

    def text(self, digits: int = 3) -> str:
        f = lambda x: f"{x:.{digits}g}"
        return f"{f(self.value)} {self.ci(digits)} (n={self.n})"

    def ci(self, digits: int = 2) -> str:
        return f"[{self.lo:.{digits}g}, {self.hi:.{digits}g}]"


class Decision(NamedTuple):
    """A verdict with what it rests on.

    verdict: SUPPORTED, NOT SUPPORTED or INCONCLUSIVE (NUANCED only from ``combine_parts``).
    estimate, interval: the effect and its 95% interval. n: seeds (or runs) per arm.
    reason: one sentence. n_needed: for INCONCLUSIVE, the seeds per arm that would
    separate the arms at the observed effect (None if decided, or if no effect is seen).
    """

    verdict: str
    estimate: float
    interval: tuple[float, float]
    n: int
    reason: str
    n_needed: int | None = None

    def text(self) -> str:
        lo, hi = self.interval
        s = f"{self.verdict}: {self.estimate:.3g} [{lo:.3g}, {hi:.3g}], n={self.n}"
        return s + (f"; {self.reason}" if self.reason else "")


def wilson(k: int, n: int, z: float = Z95) -> Estimate:
    """The Wilson score interval of a success rate k/n (n = 0: the whole of [0, 1])."""
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Estimate(math.nan, 0.0, 1.0, 0)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return Estimate(p, max(0.0, mid - half), min(1.0, mid + half), n)


def rate(successes) -> Estimate:
    """``wilson`` of a boolean array (one entry per seed)."""
    s = np.asarray(successes, bool).ravel()
    return wilson(int(s.sum()), s.size)


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> Estimate:
    """The difference of success rates k1/n1 − k2/n2 with Newcombe's hybrid score interval."""
    a, b = wilson(k1, n1, z), wilson(k2, n2, z)
    if a.n == 0 or b.n == 0:
        raise ValueError("newcombe needs n1 >= 1 and n2 >= 1")
    d = a.value - b.value
    lo = d - math.sqrt((a.value - a.lo) ** 2 + (b.hi - b.value) ** 2)
    hi = d + math.sqrt((a.hi - a.value) ** 2 + (b.value - b.lo) ** 2)
    return Estimate(d, max(-1.0, lo), min(1.0, hi), min(a.n, b.n))


def _stat(name: str):
    if name not in ("median", "mean"):
        raise ValueError(f"stat must be 'median' or 'mean', got {name!r}")
    return np.median if name == "median" else np.mean


def _finite(x, what: str) -> np.ndarray:
    a = np.asarray(x, float).ravel()
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"{what} must be a non-empty array of finite numbers (map diverged seeds first)")
    return a


def bootstrap_diff(a, b, *, stat: str = "median", paired: bool = False, n_boot: int = N_BOOT, seed: int = BOOT_SEED):
    """stat(a) − stat(b) with a percentile-bootstrap 95% interval; deterministic for a given seed.

    Args:
      a, b: per-seed values of two arms (finite). With ``paired``, a[i] and b[i] share
        seed i (same length) and the per-seed differences are resampled.
      stat: "median" or "mean".
    """
    f = _stat(stat)
    a, b = _finite(a, "a"), _finite(b, "b")
    rng = np.random.default_rng(seed)
    if paired:
        if a.shape != b.shape:
            raise ValueError(f"paired arms need the same length, got {a.size} and {b.size}")
        d = a - b
        idx = rng.integers(0, d.size, (n_boot, d.size))
        boots = f(d[idx], axis=1)
        value = float(f(d))
    else:
        ia = rng.integers(0, a.size, (n_boot, a.size))
        ib = rng.integers(0, b.size, (n_boot, b.size))
        boots = f(a[ia], axis=1) - f(b[ib], axis=1)
        value = float(f(a) - f(b))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return Estimate(value, float(lo), float(hi), int(min(a.size, b.size)))


def bootstrap_stat(a, *, stat: str = "median", n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> Estimate:
    """stat(a) with a percentile-bootstrap 95% interval (for figures and tables)."""
    f = _stat(stat)
    a = _finite(a, "a")
    idx = np.random.default_rng(seed).integers(0, a.size, (n_boot, a.size))
    lo, hi = np.percentile(f(a[idx], axis=1), [2.5, 97.5])
    return Estimate(float(f(a)), float(lo), float(hi), a.size)


def fit_rates(d, log_norm_SD) -> np.ndarray:
    """Per seed, the least-squares slope of log ‖G_d‖ against d: [S, D] -> [S] (NaN rows: NaN).

    Non-finite entries (a norm that underflowed to 0) are left out of that seed's fit.
    """
    d = np.asarray(d, float)
    y = np.atleast_2d(np.asarray(log_norm_SD, float))
    out = np.full(y.shape[0], np.nan)
    for s, row in enumerate(y):
        ok = np.isfinite(row)
        if ok.sum() >= 2:
            out[s] = np.polyfit(d[ok], row[ok], 1)[0]
    return out


def rate_diff(d, log_a_SD, log_b_SD, *, paired: bool = True, seed: int = BOOT_SEED) -> Estimate:
    """Decay rate of arm a minus arm b (per step; slopes of log-norm against d), 95% bootstrap over seeds.

    ``paired``: the arms share seeds (the same initial weights under two activations),
    so the per-seed differences are resampled. Seeds whose fit failed are dropped.
    """
    ra, rb = fit_rates(d, log_a_SD), fit_rates(d, log_b_SD)
    if paired:
        ok = np.isfinite(ra) & np.isfinite(rb)
        ra, rb = ra[ok], rb[ok]
    else:
        ra, rb = ra[np.isfinite(ra)], rb[np.isfinite(rb)]
    return bootstrap_diff(ra, rb, stat="mean", paired=paired, seed=seed)


def seeds_needed(n: int, estimate: float, lo: float, hi: float, null: float = 0.0) -> int | None:
    """Seeds per arm at which an interval of this shape would exclude the null: n·(w/|effect|)², w the half-width.

    None when the observed effect is zero (no number of seeds separates identical arms).
    """
    effect = abs(estimate - null)
    if not effect > 0 or not np.isfinite(effect):
        return None
    half = (hi - lo) / 2
    return max(n + 1, math.ceil(n * (half / effect) ** 2))


def decide(
    est: Estimate,
    *,
    null: float = 0.0,
    above: str = SUPPORTED,
    below: str = NOT_SUPPORTED,
    what: str = "the effect",
    unit: str = "seeds",
    margin: float | None = None,
    within: str = NOT_SUPPORTED,
) -> Decision:
    """The rule: ``above`` if the interval lies wholly above ``null``, ``below`` if wholly below;
    with a ``margin`` set in advance, ``within`` if it lies wholly inside (null − margin,
    null + margin) (an equivalence test: any effect is too small to matter); else INCONCLUSIVE."""
    lo, hi = est.lo, est.hi
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return Decision(INCONCLUSIVE, est.value, (lo, hi), est.n, f"{what}: no finite interval", None)
    if lo > null:
        return Decision(above, est.value, (lo, hi), est.n, f"{what} > {null:g} (95% interval excludes it)")
    if hi < null:
        return Decision(below, est.value, (lo, hi), est.n, f"{what} < {null:g} (95% interval excludes it)")
    if margin is not None and null - margin < lo and hi < null + margin:
        why = f"{what}: the 95% interval [{lo:.3g}, {hi:.3g}] lies within {null:g} ± {margin:g} (equal)"
        return Decision(within, est.value, (lo, hi), est.n, why)
    need = seeds_needed(est.n, est.value, lo, hi, null)
    why = f"{what}: the 95% interval [{lo:.3g}, {hi:.3g}] contains {null:g} at n={est.n}; " + (
        f"about {need} {unit} per arm would separate it at the observed effect {est.value:.3g}"
        if need
        else "no effect observed at this scale: more seeds alone would not separate the arms (a longer run might)"
    )
    return Decision(INCONCLUSIVE, est.value, (lo, hi), est.n, why, need)


def agrees(d: Decision) -> bool | None:
    """A reproduction row's answer from a decision: SUPPORTED -> True, NOT SUPPORTED -> False, else None."""
    return {SUPPORTED: True, NOT_SUPPORTED: False}.get(d.verdict)


def inconclusive(reason: str, n: int = 0, estimate: float = math.nan) -> Decision:
    """A Decision for a run that cannot decide (e.g. nothing learned), with the reason."""
    return Decision(INCONCLUSIVE, estimate, (math.nan, math.nan), n, reason, None)


def combine_parts(decisions) -> str:
    """One verdict from the parts a claim needs together.

    All SUPPORTED -> SUPPORTED; all NOT SUPPORTED -> NOT SUPPORTED; any INCONCLUSIVE ->
    INCONCLUSIVE (the undecided part could go either way); otherwise NUANCED.
    """
    vs = [d.verdict if isinstance(d, Decision) else d for d in decisions]
    if not vs:
        raise ValueError("combine_parts needs at least one decision")
    if INCONCLUSIVE in vs:
        return INCONCLUSIVE
    if all(v == SUPPORTED for v in vs):
        return SUPPORTED
    if all(v == NOT_SUPPORTED for v in vs):
        return NOT_SUPPORTED
    return NUANCED


def worst_fill(x, fill: float) -> np.ndarray:
    """Per-seed values with non-finite (diverged) seeds replaced by ``fill`` (a value no better than no learning)."""
    a = np.asarray(x, float)
    return np.where(np.isfinite(a), a, fill)
