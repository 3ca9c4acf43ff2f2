"""Gradient paths during training: the highway and long-range shares of the gradient, LSTM against RNN.

The trainer decomposes the cell-parameter gradient G of a fixed probe batch every
``decompose_every`` steps (``gradpaths.train``) and records

.. math::

    \\text{highway share} = ‖G^{[0]}‖ / ‖G‖,\\qquad
    \\text{long-range share} = ‖Σ_{d > d_0} G_d‖ / ‖G‖

(G^{[0]}: paths with no hop; for the RNN every recurrent edge is a hop, so its 0-hop
class is the d = 0 term). Runs on adding: an LSTM from b_f = 0 and b_f = 1 (two arms of
one trainer, the same weights per seed) and a tanh RNN with the same sizes and seeds.
Per run the shares are averaged over the probes of training.

Criterion (set before the run), each part a bootstrap 95% interval of a difference of
medians through ``_stats.decide``: (a) long-range share, LSTM (b_f = 1) − RNN; (b)
highway share, b_f = 1 − b_f = 0 (paired seeds). ``combine_parts``: SUPPORTED if both
are above 0, NOT SUPPORTED if both below, NUANCED if one each way, INCONCLUSIVE if
either is undecided, or if the LSTM (b_f = 1) did not learn (median final loss >
LEARNED × baseline: no training to follow).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from experiments import _common as C
from experiments import _stats as S
from experiments import _train as TR
from gradpaths import train as gt

CLAIM, NAME = "", "paths_training"
TITLE = "Gradient paths during training: highway and long-range shares, LSTM against RNN"
RUNS = ("b_f=0", "b_f=1", "rnn")
FIELDS = ("loss", "highway_share", "long_range_share")
LEARNED = 0.5


def sizes(args: C.Args) -> dict:
    n_t, n_h, n_b, steps, seg = args.pick((10, 8, 8, 40, 20), (50, 16, 32, 600, 50), (200, 64, 64, 5000, 250))
    return {"T": n_t, "H": n_h, "B": n_b, "steps": steps, "segment": seg, "seeds": args.n_seeds(2, 8, 16)}


def verdict(lr_lstm, lr_rnn, hw_b1, hw_b0, final_rel: float) -> tuple[str, list[S.Decision]]:
    """Per-seed time-averaged shares: long-range (LSTM b_f=1, RNN) and highway (b_f=1, b_f=0, paired);
    final_rel: the LSTM's (b_f=1) median final loss / baseline."""
    arrays = [np.asarray(x, float) for x in (lr_lstm, lr_rnn, hw_b1, hw_b0)]
    if any(a.size == 0 or not np.all(np.isfinite(a)) for a in arrays):
        return S.INCONCLUSIVE, [S.inconclusive("a share is missing (no probes)")]
    if not final_rel <= LEARNED:
        return S.INCONCLUSIVE, [S.inconclusive(f"the LSTM did not learn (final loss/baseline {final_rel:.3g})")]
    a = S.decide(S.bootstrap_diff(arrays[0], arrays[1]), what="long-range share LSTM − RNN")
    b = S.decide(S.bootstrap_diff(arrays[2], arrays[3], paired=True), what="highway share b_f=1 − b_f=0")
    return S.combine_parts([a, b]), [a, b]


def run(args: C.Args) -> C.Outcome:
    sz = sizes(args)
    probe = dict(decompose_every=sz["segment"], probe_batch=8, max_hops=2, long_range=max(1, sz["T"] // 4))
    common = dict(task="adding", T=sz["T"], hidden_size=sz["H"], recurrent_init="gaussian", batch_size=sz["B"])
    kw = common | probe | {"steps": sz["steps"], "segment": sz["segment"]}
    lstm_cfg = TR.config(args, cell="lstm", forget_bias=0.0, **kw)
    b = jnp.concatenate([TR.bias_vectors(s, sz["H"], sz["seeds"], gt.DTYPES[lstm_cfg.dtype]) for s in RUNS[:2]])
    lstm = TR.train(args, lstm_cfg, sz["seeds"], arms=RUNS[:2], init=TR.start_from_bias, per_run=(b,))
    rnn = TR.train(args, TR.config(args, cell="rnn", **kw), sz["seeds"])
    data = {s: {f: TR.arm(lstm, s, f) for f in FIELDS} for s in RUNS[:2]} | {
        "rnn": {f: TR.arm(rnn, "", f) for f in FIELDS}
    }
    mean = {s: {f: np.nanmean(data[s][f], axis=1) for f in FIELDS} for s in RUNS}
    final = TR.median_ratio(TR.final_ratio(lstm, "b_f=1"))
    v, ds = verdict(
        mean["b_f=1"]["long_range_share"],
        mean["rnn"]["long_range_share"],
        mean["b_f=1"]["highway_share"],
        mean["b_f=0"]["highway_share"],
        final,
    )
    med = {s: {f: S.bootstrap_stat(mean[s][f]) for f in FIELDS[1:]} for s in RUNS}
    headline = (
        f"adding T={sz['T']}, {sz['seeds']} seeds, mean over training: long-range (d>{probe['long_range']}) share "
        f"LSTM b_f=1 {med['b_f=1']['long_range_share'].text()} vs RNN {med['rnn']['long_range_share'].text()}; "
        f"highway share b_f=1 {med['b_f=1']['highway_share'].text()} vs b_f=0 {med['b_f=0']['highway_share'].text()}; "
        + "; ".join(d.text() for d in ds)
    )
    rows = "\n".join(
        f"| {s} | {med[s]['highway_share'].text()} | {med[s]['long_range_share'].text()} | "
        f"{C.fmt(float(np.nanmedian(data[s]['loss'][:, -1])) / lstm['baseline'])} |"
        for s in RUNS
    )
    summary = (
        f"Adding T={sz['T']}, H={sz['H']}, {sz['steps']} Adam steps, {sz['seeds']} seeds; shares of the cell-parameter "
        f"gradient on a probe batch every {sz['segment']} steps (long range: d > {probe['long_range']}).\n\n"
        + "\n".join(f"- {d.text()}" for d in ds)
        + "\n\n| run | highway share (median [95%]) | long-range share | final loss/baseline |\n|---|---|---|---|\n"
        + rows
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "paths_training.png")
    C.write_outputs(
        args,
        NAME,
        config=sz | probe,
        outcome=outcome,
        summary=summary,
        seeds=sz["seeds"],
        data={"steps": lstm["steps"], "runs": data, "time_mean": mean, "decisions": [d._asdict() for d in ds]},
        figures={"paths_training.png": _figure(lstm["steps"], data, lstm["baseline"], probe, v)},
    )
    return outcome


def _figure(steps, data, baseline, probe, v):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.0))
    labels = {"b_f=0": "LSTM b_f=0", "b_f=1": "LSTM b_f=1", "rnn": "tanh RNN"}
    for j, s in enumerate(RUNS):
        C.band(axes[0], steps, data[s]["highway_share"], f"C{j}", labels[s])
        C.band(axes[1], steps, data[s]["long_range_share"], f"C{j}", labels[s])
        C.band(axes[2], steps, data[s]["loss"] / baseline, f"C{j}", labels[s])
    axes[0].set_ylabel("highway (0-hop) share ‖G^[0]‖/‖G‖")
    axes[1].set_ylabel(f"long-range share ‖Σ_(d>{probe['long_range']}) G_d‖/‖G‖")
    axes[2].set_ylabel("loss / baseline")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.legend(fontsize=8)
    fig.suptitle(f"Gradient shares during training (median, bootstrap 95% over seeds): {v}")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
