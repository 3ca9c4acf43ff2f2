"""C7 in training: does a larger forget-gate bias train better on long lags?

Setting: an LSTM (Gaussian W_h, Adam, clip 1) on the adding problem at lag T, trained
from forget-gate biases b_f ∈ ``BIASES`` and from chrono initialisation (Tallec and
Ollivier 2018: b_f ~ log U[1, T − 1], b_i = −b_f). The settings are arms of one compiled
trainer (``_train.start_from_bias``): every arm starts from the same weights per seed and
only the bias vector differs.

Per run: the score A = mean over segments of loss / ``Task.baseline`` (the normalised
area under the loss curve; lower trains faster, 1 = nothing learned; a diverged seed
scores no better than 1) and whether it *solved* the task (final loss ≤ SOLVED × baseline).

Criterion (CLAIMS.md: "a larger bias trains better on long lags"), set before the run:

- INCONCLUSIVE when no **point bias** solves the task in at least half its seeds (too
  few steps to tell training speed apart). Chrono does not count here: it is reported
  beside the sweep and cannot lift the sweep out of INCONCLUSIVE.
- the effect A(smallest b_f) − A(largest b_f) (difference of medians, paired seeds,
  bootstrap 95%) through ``_stats.decide``: below 0 → NOT SUPPORTED, undecided →
  INCONCLUSIVE (with the seeds needed), above 0 → SUPPORTED, unless some smaller bias
  is clearly better than a larger one (A(b_j) − A(b_i) > 0 with i < j, interval above 0),
  then NUANCED (the best bias is intermediate).

Reproductions: Jozefowicz et al. 2015 (b_f = 1 against 0, this setting); Tallec and
Ollivier 2018, chrono on copy T = 500 (LSTM 128, RMSProp 1e-3) at ``--scale full`` only.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from experiments import _common as C
from experiments import _stats as S
from experiments import _train as TR
from gradpaths import train as gt

CLAIM, NAME = "C7", "c7_forget_training"
TITLE = "C7 in training: forget-gate bias against training speed on the adding problem"
BIASES = (-2.0, 0.0, 1.0, 3.0)
SETTINGS = tuple(f"b_f={b:g}" for b in BIASES) + ("chrono",)
SOLVED = 0.1


def sizes(args: C.Args) -> dict:
    n_t, n_h, n_b, steps, seg = args.pick((10, 8, 8, 40, 20), (50, 16, 32, 600, 50), (200, 64, 64, 5000, 250))
    return {"T": n_t, "H": n_h, "B": n_b, "steps": steps, "segment": seg, "seeds": args.n_seeds(2, 8, 16)}


def sweep(args: C.Args, sz: dict, task="adding", settings=SETTINGS, **change) -> dict:
    """The bias arms of one compiled LSTM trainer (b_f = 0 in the config; the bias set per run)."""
    fields = dict(task=task, T=sz["T"], cell="lstm", hidden_size=sz["H"], forget_bias=0.0, recurrent_init="gaussian")
    cfg = TR.config(args, **fields, batch_size=sz["B"], steps=sz["steps"], segment=sz["segment"], **change)
    dt, n = gt.DTYPES[cfg.dtype], sz["seeds"]
    b = jnp.concatenate([TR.bias_vectors(s, sz["H"], n, dt, chrono_T=sz.get("chrono_T", sz["T"])) for s in settings])
    return TR.train(args, cfg, n, arms=settings, init=TR.start_from_bias, per_run=(b,))


def verdict(scores: list, solved: list) -> tuple[str, S.Decision]:
    """scores, solved: per point bias (increasing b_f), per seed (paired across biases)."""
    if len(scores) < 2 or len(solved) != len(scores):
        raise ValueError(f"verdict needs scores and solved flags at two or more biases, got {len(scores)}")
    if not any(np.mean(s) >= 0.5 for s in solved):
        reason = "no point bias solved the task in half its seeds: too few steps to compare training speed"
        return S.INCONCLUSIVE, S.inconclusive(reason, len(scores[0]))
    d = S.decide(S.bootstrap_diff(scores[0], scores[-1], paired=True), what="A(smallest b_f) − A(largest b_f)")
    if d.verdict != S.SUPPORTED:
        return d.verdict, d
    n = len(scores)
    rev = [
        (i, j)
        for i in range(n)
        for j in range(i + 1, n)
        if S.decide(S.bootstrap_diff(scores[j], scores[i], paired=True)).verdict == S.SUPPORTED
    ]
    return (S.NUANCED if rev else S.SUPPORTED), d


def pair_row(rec, better, worse, source, setting, expected) -> C.Reproduction:
    """Does arm ``better`` train faster than ``worse``: decide(A(worse) − A(better))."""
    d = S.decide(S.bootstrap_diff(TR.score(rec, worse), TR.score(rec, better), paired=True), what="A difference")
    agrees = S.agrees(d)
    return C.Reproduction(source, setting, expected, f"A({worse}) − A({better}): {d.text()}", agrees)


def run(args: C.Args) -> C.Outcome:
    sz = sizes(args)
    rec = sweep(args, sz)
    score = {s: TR.score(rec, s) for s in SETTINGS}
    solved = {s: TR.solved(TR.final_ratio(rec, s), SOLVED) for s in SETTINGS}
    pts = SETTINGS[: len(BIASES)]
    v, d = verdict([score[s] for s in pts], [solved[s] for s in pts])
    med = {s: S.bootstrap_stat(score[s]) for s in SETTINGS}
    headline = (
        f"adding T={sz['T']}, {sz['seeds']} seeds: median score A (mean loss/baseline) [95%] "
        + ", ".join(f"{s} {med[s].value:.3g} [{med[s].lo:.3g}, {med[s].hi:.3g}]" for s in SETTINGS)
        + f"; solved {', '.join(f'{s} {int(solved[s].sum())}' for s in SETTINGS)}; {d.text()}"
    )
    setting = f"LSTM adding T={sz['T']}, H={sz['H']}, {sz['seeds']} seeds, {sz['steps']} Adam steps"
    reps = (
        pair_row(rec, "b_f=1", "b_f=0", "Jozefowicz et al. 2015", setting, "forget bias 1 trains better than 0"),
        _chrono_row(args),
    )
    rows = "\n".join(
        f"| {s} | {med[s].text()} | {S.rate(solved[s]).text(2)} | {C.fmt(TR.median_ratio(TR.final_ratio(rec, s)))} |"
        for s in SETTINGS
    )
    summary = (
        f"{setting}, batch {sz['B']}, lr 1e-2, clip 1 (same weights for every setting). Score A = mean over "
        f"training of loss/baseline; solved = final loss ≤ {SOLVED}×baseline.\n\nDecision: {d.text()}\n\n"
        "| setting | median A [bootstrap 95%] | solved [Wilson 95%] | median final loss/baseline |\n"
        "|---|---|---|---|\n" + rows
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c7_forget_training.png", reps)
    data = {"score": score, "solved": solved, "decision": d._asdict(), "steps": rec["steps"]}
    figures = {"c7_forget_training.png": _figure(rec, score, sz, v)}
    C.write_outputs(
        args, NAME, config=sz, data=data, outcome=outcome, summary=summary, figures=figures, seeds=sz["seeds"]
    )
    return outcome


def _chrono_row(args: C.Args) -> C.Reproduction:
    src, exp = "Tallec and Ollivier 2018 (chrono)", "chrono initialisation learns copy T=500 faster than b_f = 1"
    setting = "copy T=500, LSTM 128, RMSProp 1e-3, chrono T_max = 750"
    if args.scale != "full":
        return C.Reproduction(src, setting, exp, "—", C.NOT_RUN)
    sz = {"T": 500, "H": 128, "B": 64, "steps": 20000, "segment": 500, "seeds": args.n_seeds(2, 8, 16)}
    rec = sweep(args, sz | {"chrono_T": 750}, "copy", ("b_f=1", "chrono"), optimizer="rmsprop", lr=1e-3, clip_norm=None)
    return pair_row(rec, "chrono", "b_f=1", src, setting, exp)


def _figure(rec, score, sz, v):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    for j, s in enumerate(SETTINGS):
        C.band(axes[0], rec["steps"], TR.arm(rec, s) / rec["baseline"], f"C{j}", s)
        C.arm_dots(axes[1], j, score[s], f"C{j}")
    axes[0].axhline(SOLVED, color="k", ls=":", lw=0.8, label=f"solved ({SOLVED}×baseline)")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("loss / baseline (median, 95% CI over seeds)")
    axes[0].legend(fontsize=7)
    axes[1].set_xticks(range(len(SETTINGS)), SETTINGS, fontsize=8)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("score A (seeds; median with bootstrap 95%)")
    fig.suptitle(f"C7 training (adding T={sz['T']}, {sz['seeds']} seeds): {v}")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
