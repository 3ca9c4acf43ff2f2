"""Gradient paths during training: the highway and long-range shares of the gradient, LSTM against RNN.

The trainer decomposes the cell-parameter gradient G of a fixed probe batch every
``decompose_every`` steps (``gradpaths.train``) and records

.. math::

    \\text{highway share} = ‖G^{[0]}‖ / ‖G‖,\\qquad
    \\text{long-range share} = ‖Σ_{d > d_0} G_d‖ / ‖G‖

(G^{[0]}: paths with no hop; for the RNN every recurrent edge is a hop, so its 0-hop
class is the d = 0 term). Runs: the LSTM forget-bias sweep of c7_forget_training (the
same cached points; b_f = 0 and b_f = 1 are compared here) and a tanh RNN with the same
task, sizes and seeds (one experiments/sweep.py point).

Per run the shares are averaged over the probes of training. Verdict (set before the
run), with "clearly" meaning beyond the seed spread (c7_forget_training.clearly_better):
(a) the LSTM (b_f = 1) keeps a clearly larger long-range share than the RNN; (b) b_f = 1
keeps a clearly larger highway share than b_f = 0. SUPPORTED if both, NOT SUPPORTED if
neither, NUANCED if one. INCONCLUSIVE if a share is missing (no probes) or the LSTM
(b_f = 1) did not learn (median final loss > LEARNED × baseline: no training to follow).
"""

from __future__ import annotations

import numpy as np

from experiments import _common as C
from experiments import c7_forget_training as FT
from experiments import sweep as S

CLAIM, NAME = "", "paths_training"
TITLE = "Gradient paths during training: highway and long-range shares, LSTM against RNN"
RUNS = ("b_f=0", "b_f=1", "rnn")
LEARNED = 0.5


def verdict(lr_lstm, lr_rnn, hw_b1, hw_b0, final_rel: float) -> str:
    """Per-seed time-averaged shares: long-range (LSTM b_f=1, RNN) and highway (b_f=1, b_f=0);
    final_rel: the LSTM's (b_f=1) median final loss / baseline."""
    arrays = [np.asarray(x, float) for x in (lr_lstm, lr_rnn, hw_b1, hw_b0)]
    if any(a.size == 0 or not np.all(np.isfinite(a)) for a in arrays) or not final_rel <= LEARNED:
        return C.INCONCLUSIVE
    a = FT.clearly_better(-arrays[0], -arrays[1])
    b = FT.clearly_better(-arrays[2], -arrays[3])
    return C.SUPPORTED if a and b else (C.NUANCED if a or b else C.NOT_SUPPORTED)


def run(args: C.Args) -> C.Outcome:
    sz = FT.sizes(args)
    res = FT.sweep(args)
    rnn_cfg = FT.config(sz, args, cell="rnn")
    rec = S.run({"rnn": rnn_cfg}, args.dir(NAME) / "points", seeds=sz["seeds"], progress=not args.quick)["rnn"]
    data = {s: {f: FT.curves(res, s, f) for f in ("loss", "highway_share", "long_range_share")} for s in RUNS[:2]}
    data["rnn"] = {f: np.array(rec["metrics"][f], dtype=float) for f in ("loss", "highway_share", "long_range_share")}
    steps = np.asarray(res["steps"], float)
    mean = {s: {f: np.nanmean(data[s][f], axis=1) for f in data[s]} for s in RUNS}
    v = verdict(
        mean["b_f=1"]["long_range_share"],
        mean["rnn"]["long_range_share"],
        mean["b_f=1"]["highway_share"],
        mean["b_f=0"]["highway_share"],
        float(np.nanmedian(data["b_f=1"]["loss"][:, -1])) * 6.0,
    )
    med = {s: {f: float(np.median(mean[s][f])) for f in mean[s]} for s in RUNS}
    first_last = {
        s: {f: (float(np.nanmedian(data[s][f][:, 0])), float(np.nanmedian(data[s][f][:, -1]))) for f in data[s]}
        for s in RUNS
    }
    d0 = sz["long_range"]
    lstm_final = first_last["b_f=1"]["loss"][1] * 6.0
    headline = (
        f"adding T={sz['T']}, mean over training: long-range (d>{d0}) share LSTM b_f=1 "
        f"{C.fmt(med['b_f=1']['long_range_share'])} vs RNN {C.fmt(med['rnn']['long_range_share'])}; "
        f"highway share b_f=1 {C.fmt(med['b_f=1']['highway_share'])} vs b_f=0 {C.fmt(med['b_f=0']['highway_share'])}"
    )
    if v == C.INCONCLUSIVE:
        headline = f"the LSTM did not learn (final loss/baseline {C.fmt(lstm_final)} > {LEARNED}); " + headline
    rows = "\n".join(
        f"| {s} | {C.fmt(med[s]['highway_share'])} | {C.fmt(first_last[s]['highway_share'][0])} → "
        f"{C.fmt(first_last[s]['highway_share'][1])} | {C.fmt(med[s]['long_range_share'])} | "
        f"{C.fmt(first_last[s]['long_range_share'][0])} → {C.fmt(first_last[s]['long_range_share'][1])} | "
        f"{C.fmt(first_last[s]['loss'][1] * 6.0)} |"
        for s in RUNS
    )
    summary = (
        f"Adding T={sz['T']}, H={sz['H']}, {sz['steps']} Adam steps, {sz['seeds']} seeds; shares of the "
        f"cell-parameter gradient on a probe batch every {sz['decompose_every']} steps (long range: d > {d0}). "
        "LSTM runs are c7_forget_training's; the RNN is tanh with the same sizes.\n\n"
        "| run | highway share (mean) | first → last probe | long-range share (mean) | first → last probe | "
        "final loss/baseline |\n|---|---|---|---|---|---|\n" + rows
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "paths_training.png")
    C.write_outputs(
        args,
        NAME,
        config=sz | {"rnn": rnn_cfg},
        data={"steps": steps, "runs": data, "time_mean": mean},
        outcome=outcome,
        summary=summary,
        figures={"paths_training.png": _figure(steps, data, sz, v)},
        seeds=sz["seeds"],
    )
    return outcome


def _figure(steps, data, sz, v):
    import matplotlib.pyplot as plt

    from experiments.c2_vanishing import band

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.0))
    labels = {"b_f=0": "LSTM b_f=0", "b_f=1": "LSTM b_f=1", "rnn": "tanh RNN"}
    for j, s in enumerate(RUNS):
        band(axes[0], steps, data[s]["highway_share"], f"C{j}", labels[s])
        band(axes[1], steps, data[s]["long_range_share"], f"C{j}", labels[s])
        band(axes[2], steps, data[s]["loss"] * 6.0, f"C{j}", labels[s])
    axes[0].set_ylabel("highway (0-hop) share ‖G^[0]‖/‖G‖")
    axes[1].set_ylabel(f"long-range share ‖Σ_(d>{sz['long_range']}) G_d‖/‖G‖")
    axes[2].set_ylabel("loss / baseline (1/6)")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.legend(fontsize=8)
    lr = {s: C.fmt(float(np.nanmedian(np.nanmean(data[s]["long_range_share"], 1)))) for s in RUNS}
    fig.suptitle(
        f"Gradient shares during training (adding T={sz['T']}, median and IQR over seeds): {v}; mean long-range "
        f"share LSTM b_f=1 {lr['b_f=1']}, b_f=0 {lr['b_f=0']}, RNN {lr['rnn']}"
    )
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
