"""C9 in training: the IRNN (identity-initialised ReLU RNN) against the tanh RNN on adding.

Le, Jaitly and Hinton (2015) report that the IRNN solves the adding problem at lags
where a tanh RNN stays at the baseline MSE. Here every model gets Adam and
clip_by_global_norm(1). The IRNN runs at lr ``LR_IRNN`` (a ReLU RNN with W_h = I is
unstable at Adam's usual 1e-2); to be fair the tanh RNN runs both at that lr and at
c8_lag's recipe (lr 1e-2; the same point c8_lag trains, shared through ``_train``'s cache).

Success is c8_lag's: final loss / ``Task.baseline`` < 0.5. Criterion (CLAIMS.md: "the
IRNN trains where the tanh RNN fails"), set before the run: the difference of success
rates IRNN − (the better tanh RNN), with Newcombe's 95% interval, through
``_stats.decide``: SUPPORTED above 0, NOT SUPPORTED below, INCONCLUSIVE otherwise with
the seeds needed.

Reproduction row: Le et al. name adding at T = 150 and 300; those run at ``--scale
full`` (H=100, the same Adam recipe, 10000 steps); at smaller scales the
row says "not run at this scale".
"""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments import _common as C
from experiments import _stats as S
from experiments import _train as TR

CLAIM, NAME = "C9", "c9_irnn"
TITLE = "C9 in training: IRNN against tanh RNN on the adding task"
LR_IRNN = 2e-3
SUCCESS = 0.5
LE_T = (150, 300)


# c8_lag's adding recipe at one lag (so the tanh-RNN point at lr 1e-2 is shared): (quick, default, full)
SIZES = {
    "T": (5, 50, 150),
    "H": (4, 16, 100),
    "batch": (8, 32, 64),
    "steps": (20, 600, 10000),
    "segment": (10, 100, 100),
    "le_T": ((), (), LE_T),
}


def sizes(args: C.Args) -> dict:
    return args.picks(**SIZES) | {"seeds": args.n_seeds(2, 8, 16)}


def verdict(irnn, tanh_runs) -> S.Decision:
    """irnn, tanh_runs[i]: success per seed (bool). The better tanh run is the one with more successes."""
    if len(irnn) == 0 or not tanh_runs or any(len(r) == 0 for r in tanh_runs):
        raise ValueError("verdict needs per-seed successes for the IRNN and for every tanh RNN run")
    best = max(tanh_runs, key=lambda r: np.sum(r))
    est = S.newcombe(int(np.sum(irnn)), len(irnn), int(np.sum(best)), len(best))
    return S.decide(est, what="success rate IRNN − best tanh RNN")


def _runs(args, sz, T) -> dict[str, dict]:
    base = TR.config(
        args,
        task="adding",
        T=T,
        cell="rnn",
        hidden_size=sz["H"],
        batch_size=sz["batch"],
        steps=sz["steps"],
        segment=sz["segment"],
    )
    cfgs = {
        f"irnn (lr {LR_IRNN:g})": dataclasses.replace(base, cell="irnn", lr=LR_IRNN),
        f"tanh (lr {LR_IRNN:g})": dataclasses.replace(base, lr=LR_IRNN),
        f"tanh (lr {base.lr:g})": base,
    }
    return {k: TR.train(args, c, sz["seeds"]) for k, c in cfgs.items()}


def run(args: C.Args) -> C.Outcome:
    sz = sizes(args)
    n, T = sz["seeds"], sz["T"]
    runs = _runs(args, sz, T)
    ratios = {k: TR.final_ratio(r) for k, r in runs.items()}
    succ = {k: TR.solved(r, SUCCESS) for k, r in ratios.items()}
    keys = list(runs)
    d = verdict(succ[keys[0]], [succ[k] for k in keys[1:]])
    headline = (
        f"adding T={T}, {n} seeds, success (final MSE < {SUCCESS}×baseline) [Wilson 95%]: "
        + "; ".join(f"{k} {int(s.sum())}/{n} {S.rate(s).ci()}" for k, s in succ.items())
        + f"; IRNN − best tanh {d.text()}"
    )
    reps = tuple(_le_row(args, sz, T_) for T_ in LE_T)
    rows = "\n".join(
        f"| {k} | {S.rate(succ[k]).text(2)} | {C.fmt(TR.median_ratio(r))} | {', '.join(C.fmt(x, 2) for x in r)} |"
        for k, r in ratios.items()
    )
    summary = (
        f"Adding T={T}, H={sz['H']}, batch {sz['batch']}, {sz['steps']} Adam steps, clip 1, {n} seeds. "
        f"IRNN: W_h = I, ReLU. r = final loss / baseline; success r < {SUCCESS}.\n\nDecision: {d.text()}\n\n"
        "| model | success rate [Wilson 95%] | median r | r per seed |\n|---|---|---|---|\n" + rows
    )
    outcome = C.Outcome(CLAIM, NAME, d.verdict, headline, "c9_irnn.png", reps)
    C.write_outputs(
        args,
        NAME,
        config=sz | {"lr_irnn": LR_IRNN},
        outcome=outcome,
        summary=summary,
        seeds=n,
        data={"ratios": ratios, "success": succ, "decision": d._asdict()},
        figures={"c9_irnn.png": _figure(runs, succ, T, d)},
    )
    return outcome


def _le_row(args, sz, T) -> C.Reproduction:
    src, exp = "Le, Jaitly and Hinton 2015 (IRNN, adding)", "IRNN far below the baseline MSE; tanh RNN stays near it"
    if T not in sz["le_T"]:
        return C.Reproduction(src, f"T={T}", exp, "—", C.NOT_RUN)
    runs = _runs(args, sz, T)
    succ = [TR.solved(TR.final_ratio(r), SUCCESS) for r in runs.values()]
    d = verdict(succ[0], succ[1:])
    agrees = S.agrees(d)
    return C.Reproduction(src, f"T={T}, H={sz['H']}, {sz['steps']} Adam steps", exp, d.text(), agrees)


def _figure(runs, succ, T, d):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    for i, (k, rec) in enumerate(runs.items()):
        C.band(axes[0], rec["steps"], TR.arm(rec) / rec["baseline"], f"C{i}", k)
        e = S.rate(succ[k])
        axes[1].errorbar([i], [e.value], [[e.value - e.lo], [e.hi - e.value]], fmt="o", color=f"C{i}", capsize=5)
    axes[0].axhline(1.0, color="k", ls="--", lw=0.8, label="baseline")
    axes[0].axhline(SUCCESS, color="k", ls=":", lw=0.8, label="success")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("MSE / baseline (median, 95% CI)")
    axes[0].legend(fontsize=7)
    axes[1].set_xticks(range(len(runs)), list(runs), rotation=20, ha="right", fontsize=8)
    axes[1].set_ylim(-0.05, 1.05)
    axes[1].set_ylabel("success rate (Wilson 95%)")
    fig.suptitle(f"C9 IRNN, adding T={T}: {d.text()}", fontsize=9)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
