"""C9 in training: the IRNN (identity-initialised ReLU RNN) against the tanh RNN and the LSTM on adding.

Le, Jaitly and Hinton (2015) report that the IRNN solves the adding problem at lags
where a tanh RNN stays at the baseline MSE 1/6. They used SGD with gradient clipping and
small learning rates; here the IRNN gets Adam, clip_by_global_norm(1) and lr ``LR_IRNN``
(a ReLU RNN with W_h = I is unstable at Adam's usual 1e-2). To make the comparison
fair, the tanh RNN is trained with exactly the IRNN's settings **and** with c8_lag's
recipe (Adam lr 1e-2, clip 1; those runs, with the LSTM's, are c8_lag's cached points).

Success is c8_lag's: final loss (mean over the last segment) < 0.5 × 1/6; a tanh RNN
"fails" when its median final loss / baseline is ≥ 0.9 (it stays at the baseline).

Criterion (CLAIMS.md: "the IRNN trains where the tanh RNN fails"), at one lag T (50 at
default scale, where c8_lag's tanh RNN stays at the baseline; 200 at full scale):

- SUPPORTED if the IRNN's success rate is ≥ 1/2 while the tanh RNN stays at the
  baseline under both learning rates;
- NOT SUPPORTED if the IRNN's median final loss is no lower than the better tanh RNN's,
  or the IRNN itself stays at the baseline;
- NUANCED otherwise (the IRNN is better but does not solve the task, or the tanh RNN
  also leaves the baseline).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from experiments import _common as C
from experiments import c8_lag as L

CLAIM, NAME = "C9", "c9_irnn"
TITLE = "C9 in training: IRNN against tanh RNN and LSTM on the adding task"
LR_IRNN = 2e-3
COLORS = ("C4", "C1", "C3", "C0")  # irnn, tanh rnn at the IRNN's lr, tanh rnn and lstm at c8_lag's


def verdict(irnn: list[float], tanh_runs: list[list[float]]) -> str:
    """The rule in the module docstring.

    Args:
      irnn: the IRNN's final loss / baseline per seed (NaN: diverged).
      tanh_runs: the tanh RNN's final loss / baseline per seed, one list per learning rate.
    """
    if len(irnn) == 0 or not tanh_runs or any(len(r) == 0 for r in tanh_runs):
        raise ValueError("verdict needs per-seed ratios for the IRNN and for every tanh RNN run")
    irnn_med = L.median_ratio(irnn)
    tanh_meds = [L.median_ratio(r) for r in tanh_runs]
    if irnn_med >= min(tanh_meds) or irnn_med >= L.STAY:
        return C.NOT_SUPPORTED
    if L.success_rate(irnn) >= 0.5 and all(m >= L.STAY for m in tanh_meds):
        return C.SUPPORTED
    return C.NUANCED


def run(args: C.Args) -> C.Outcome:
    sz = L.sizes(args)
    T = args.pick(5, 50, 200)  # default: the lag where c8_lag's tanh RNN stays at the baseline
    sz = {**sz, "T": {**sz["T"], "adding": (T,)}}
    n = sz["seeds"]
    ref = L.run_grid(args, sz, "adding", cells=("rnn", "lstm") if not args.quick else ("rnn",))[T]
    folder = args.dir(NAME) / "points"
    runs = {}
    for cell in ("irnn", "rnn") if not args.quick else ("irnn",):
        cfg = dataclasses.replace(L.config(sz, "adding", T, cell), lr=LR_IRNN)
        path = L.point_path(folder, f"adding-T{T}-{cell}", cfg, n)
        runs[f"{cell} (lr {LR_IRNN:g})"] = L.train_point(cfg, n, path, label=f"C9 {cell} lr {LR_IRNN:g}")
    for cell, rec in ref.items():
        runs[f"{cell} (lr {sz['lr']:g})"] = rec
    ratios = {k: L.final_ratio(r) for k, r in runs.items()}
    irnn_key = f"irnn (lr {LR_IRNN:g})"
    tanh_keys = [k for k in ratios if k.startswith("rnn")]
    if args.quick:
        v, why = C.INCONCLUSIVE, f"quick mode: {sz['steps']['adding']} steps cannot show learning"
    else:
        v, why = verdict(list(ratios[irnn_key]), [list(ratios[k]) for k in tanh_keys]), ""
    stats = {k: {"success": L.success_rate(r), "median": L.median_ratio(r)} for k, r in ratios.items()}
    headline = (
        f"adding T={T}, {n} seeds, success (MSE < {L.SUCCESS}×1/6) and median MSE: "
        + "; ".join(f"{k} {round(s['success'] * n)}/{n}, {C.fmt(s['median'] / 6)}" for k, s in stats.items())
        + (f"; {why}" if why else "")
    )
    best_tanh = min(tanh_keys, key=lambda k: stats[k]["median"])
    reps = (
        C.Reproduction(
            "Le, Jaitly and Hinton 2015 (IRNN, adding)",
            f"T={T}, H={sz['H']['adding']}, Adam + clip 1; IRNN lr {LR_IRNN:g}; "
            f"tanh RNN at lr {LR_IRNN:g} and {sz['lr']:g}; "
            f"{sz['steps']['adding']} steps",
            "IRNN goes far below MSE 0.167; the tanh RNN stays near it",
            f"median MSE: IRNN {C.fmt(stats[irnn_key]['median'] / 6)}, best tanh RNN ({best_tanh}) "
            f"{C.fmt(stats[best_tanh]['median'] / 6)}",
            None if args.quick else v == C.SUPPORTED,
        ),
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c9_irnn.png", reps)
    rows = "\n".join(
        f"| {k} | {s['success']:.2f} | {C.fmt(s['median'])} | {C.fmt(s['median'] / 6)} | "
        f"{', '.join(C.fmt(x, 2) for x in ratios[k])} |"
        for k, s in stats.items()
    )
    summary = (
        f"Adding task T={T}, H={sz['H']['adding']}, batch {sz['batch']}, {sz['steps']['adding']} steps, "
        f"{n} seeds, Adam with "
        f"clip_by_global_norm(1). IRNN: W_h = I, ReLU, lr {LR_IRNN:g} (Le et al. used SGD with clipping and small "
        f"learning rates). The tanh RNN runs at both learning rates; the lr {sz['lr']:g} runs are c8_lag's points. "
        f"r = final loss / (1/6); success r < {L.SUCCESS}; staying at the baseline: median r ≥ {L.STAY}.\n\n"
        "| model | success rate | median r | median MSE | r per seed |\n|---|---|---|---|---|\n" + rows
    )
    C.write_outputs(
        args,
        NAME,
        config={**sz, "lr_irnn": LR_IRNN},
        data={"ratios": ratios, "stats": stats, "loss_curves": {k: r["loss"] for k, r in runs.items()}},
        outcome=outcome,
        summary=summary,
        figures={"c9_irnn.png": _figure(runs, stats, T, v)},
        seeds=n,
    )
    return outcome


def _figure(runs, stats, T, v):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    for i, (k, rec) in enumerate(runs.items()):
        loss = np.array(rec["loss"], dtype=float) / rec["baseline"]
        steps = np.asarray(rec["step"])
        col = COLORS[i % len(COLORS)]
        axes[0].plot(steps, loss.T, color=col, lw=0.6, alpha=0.4)
        axes[0].plot(steps, np.nanmedian(loss, 0), color=col, lw=2, label=f"{k} (median)")
        r = L.final_ratio(rec)
        axes[1].scatter(np.full(len(r), i), np.where(np.isfinite(r), r, np.nan), color=col, s=18)
    for ax in axes:
        ax.axhline(1.0, color="k", ls="--", lw=0.8, label="baseline MSE 1/6")
        ax.axhline(L.SUCCESS, color="k", ls=":", lw=0.8, label=f"success < {L.SUCCESS}×baseline")
        ax.set_yscale("log")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel("MSE / (1/6) (segment mean; thin: seeds)")
    axes[0].legend(fontsize=7)
    axes[1].set_xticks(range(len(runs)), list(runs), rotation=30, ha="right", fontsize=7)
    axes[1].set_ylabel("final MSE / (1/6), per seed")
    irnn = next(k for k in stats if k.startswith("irnn"))
    tanh = [k for k in stats if k.startswith("rnn")]
    fig.suptitle(
        f"C9 ({v}), adding T={T}: the IRNN solves {stats[irnn]['success']:.0%} of seeds (median MSE "
        f"{C.fmt(stats[irnn]['median'] / 6)}); the tanh RNN "
        + ", ".join(f"{k[5:-1]}: {stats[k]['success']:.0%} (median MSE {C.fmt(stats[k]['median'] / 6)})" for k in tanh)
    )
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
