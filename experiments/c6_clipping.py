"""C6 in training: does clip_by_global_norm(1) stop divergence, and does the LSTM diverge less?

Setting (Pascanu, Mikolov and Bengio 2013): plain SGD on the adding task, tanh RNN and
LSTM (forget bias 1), both with W_h ~ N(0, g²/H) ("gaussian", as in c6_explosion), at
recurrent scales g where the gradient explodes at initialisation. Each (cell, clipping)
pair is one compiled trainer; the scales and seeds run together in one ``vmap`` (W_h is
rescaled after initialisation, ``c8_lag.train_point``). The learning rate is large
enough (0.1) for unclipped SGD to be carried away by exploding gradients.

Measured per (cell, clipping, g): the **divergence rate**, the fraction of seeds whose
loss or gradient became non-finite (``train`` freezes them) or whose final loss is over
``BLOWUP`` = 10 × the baseline 1/6; the final loss / baseline of the others (median);
the fraction of steps whose pre-clip gradient norm exceeded 1 (clipped). Beside them:
the at-initialisation explosion fractions that c6_explosion wrote, if it ran.

Criterion (CLAIMS.md: "the LSTM explosion fraction is below the RNN's at matched weight
scales, and clipping lowers the divergence rate"; this module judges the training side):

- clipping lowers the divergence rate: fewer divergences with clipping than without,
  summed over cells and scales, and more at no (cell, g);
- the LSTM diverges less than the RNN: unclipped, its rate is ≤ the RNN's at every g
  and < at one or more.

SUPPORTED if both hold, NOT SUPPORTED if neither, NUANCED if one. INCONCLUSIVE if no
unclipped run diverges (nothing for clipping to prevent).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from experiments import _common as C
from experiments import c8_lag as L
from gradpaths import train as gt

CLAIM, NAME = "C6", "c6_clipping"
TITLE = "C6 in training: clipping against divergence, RNN against LSTM"
BLOWUP = 10.0
CELLS = ("rnn", "lstm")
CLIPS = {"no clipping": None, "clip 1.0": 1.0}
NO_LEARNING = "no setting gets below the baseline in these steps: this measures divergence, not learning."


def sizes(args: C.Args) -> dict:
    return {
        "T": args.pick(10, 50, 100),
        "H": args.pick(4, 16, 64),
        "batch": args.pick(8, 32, 64),
        "lr": 0.1,
        "steps": args.pick(20, 200, 1000),
        "segment": args.pick(10, 50, 100),
        "gains": args.pick((4.0,), (1.0, 2.0, 3.0), (1.0, 1.5, 2.0, 3.0, 4.0)),  # scales c6_explosion also runs
        "seeds": args.n_seeds(2, 6, 32),
        "cells": args.pick(("rnn",), CELLS, CELLS),
    }


def config(sz: dict, cell: str, clip: float | None) -> gt.TrainConfig:
    return gt.TrainConfig(
        task="adding",
        T=sz["T"],
        cell=cell,
        hidden_size=sz["H"],
        recurrent_init="gaussian",
        batch_size=sz["batch"],
        steps=sz["steps"],
        segment=sz["segment"],
        optimizer="sgd",
        lr=sz["lr"],
        clip_norm=clip,
    )


def diverged(record: dict) -> np.ndarray:
    """Per seed: non-finite at some step, or final loss > BLOWUP × baseline."""
    r = L.final_ratio(record)
    return ~np.isfinite(r) | (r > BLOWUP)


def verdict(rate: dict[str, dict[str, list[float]]]) -> str:
    """The rule in the module docstring.

    Args:
      rate: {cell: {"no clipping": [divergence rate per g], "clip 1.0": [...]}} for cells
        "rnn" and "lstm" (rates in [0, 1], the same gains for every entry).
    """
    if set(rate) != set(CELLS) or any(set(v) != set(CLIPS) for v in rate.values()):
        raise ValueError(
            f"rate needs cells {CELLS} each with {tuple(CLIPS)}, got { ({k: sorted(v) for k, v in rate.items()}) }"
        )
    a = {c: {k: np.asarray(v, float) for k, v in rate[c].items()} for c in CELLS}
    lens = {len(v) for d in a.values() for v in d.values()}
    if len(lens) != 1 or 0 in lens:
        raise ValueError(f"need one rate per gain for every (cell, clipping), got lengths {sorted(lens)}")
    off = [a[c]["no clipping"] for c in CELLS]
    on = [a[c]["clip 1.0"] for c in CELLS]
    if sum(x.sum() for x in off) == 0:
        return C.INCONCLUSIVE
    clip_lowers = sum(x.sum() for x in on) < sum(x.sum() for x in off) and not any(
        np.any(y > x) for x, y in zip(off, on)
    )
    rnn, lstm = a["rnn"]["no clipping"], a["lstm"]["no clipping"]
    lstm_fewer = bool(np.all(lstm <= rnn) and np.any(lstm < rnn))
    if clip_lowers and lstm_fewer:
        return C.SUPPORTED
    return C.NUANCED if clip_lowers or lstm_fewer else C.NOT_SUPPORTED


def at_init(args: C.Args, gains) -> dict | None:
    """c6_explosion's explosion fractions at these gains ({cell: [fraction per g]}), if it ran."""
    path = Path(args.out) / "c6_explosion" / "results.json"
    if not path.exists():
        return None
    r = json.loads(path.read_text())
    frac, grid = r["data"].get("fraction", {}), list(r["config"].get("gains", []))
    if not all(g in grid for g in gains):
        return None
    return {
        "fraction": {c: [frac[c][grid.index(g)] for g in gains] for c in frac},
        "scale": r.get("scale"),
        "T": r["config"].get("T"),
        "H": r["config"].get("H"),
        "threshold": r["config"].get("threshold"),
    }


def run(args: C.Args) -> C.Outcome:
    sz = sizes(args)
    gains, n = sz["gains"], sz["seeds"]
    scale_per_seed = np.repeat(np.asarray(gains, float), n)
    folder = args.dir(NAME) / "points"
    recs, rate, final, clipped, spike, nonfinite = {}, {}, {}, {}, {}, {}
    for cell in sz["cells"]:
        for label, clip in CLIPS.items():
            cfg = config(sz, cell, clip)
            tag = f"{cell}-{'clip' if clip else 'noclip'}-g{'_'.join(f'{g:g}' for g in gains)}"
            path = L.point_path(folder, tag, cfg, n)
            rec = L.train_point(cfg, len(scale_per_seed), path, w_h_scale=scale_per_seed, label=f"C6 {cell} {label}")
            recs[(cell, label)] = rec
            div = diverged(rec).reshape(len(gains), n)
            r = L.final_ratio(rec).reshape(len(gains), n)
            cl = np.array([[np.nan if v is None else v for v in row] for row in rec["clipped"]], float)
            loss = np.array([[np.nan if v is None else v for v in row] for row in rec["loss"]], float)
            rate.setdefault(cell, {})[label] = div.mean(1).tolist()
            nonfinite.setdefault(cell, {})[label] = int((np.asarray(rec["diverged_at"]) >= 0).sum())
            final.setdefault(cell, {})[label] = [
                float(np.median(x[~d])) if (~d).any() else np.nan for x, d in zip(r, div)
            ]
            clipped.setdefault(cell, {})[label] = np.nanmean(cl, 1).reshape(len(gains), n).mean(1).tolist()
            spike.setdefault(cell, {})[label] = (
                (np.nanmax(loss, 1) / rec["baseline"]).reshape(len(gains), n).max(1).tolist()
            )
    init = at_init(args, gains)
    if args.quick:
        v, why = C.INCONCLUSIVE, f"quick mode: {sz['steps']} steps of the RNN only cannot compare cells"
    else:
        v, why = verdict(rate), ""
    headline = (
        f"divergence rate (SGD lr {sz['lr']:g}, adding T={sz['T']}) at g = {', '.join(f'{g:g}' for g in gains)}: "
        + "; ".join(f"{c} {lab} {', '.join(f'{x:.2f}' for x in rate[c][lab])}" for c in sz["cells"] for lab in CLIPS)
        + (
            "; at init (c6_explosion) "
            + "; ".join(f"{c} {', '.join(f'{x:.2f}' for x in init['fraction'][c])}" for c in sz["cells"])
            if init
            else "; no c6_explosion results at these scales"
        )
        + "; non-finite runs without / with clipping: "
        + ", ".join(f"{c} {nonfinite[c]['no clipping']}/{nonfinite[c]['clip 1.0']}" for c in sz["cells"])
        + f" of {len(scale_per_seed)}"
        + (f"; {why}" if why else "")
    )
    summary = _summary(sz, rate, final, clipped, spike, init)
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c6_clipping.png", _reproductions(sz, rate, final, clipped))
    C.write_outputs(
        args,
        NAME,
        config=sz,
        data={
            "divergence_rate": rate,
            "final_ratio_median": final,
            "clipped_fraction": clipped,
            "max_segment_ratio": spike,
            "nonfinite_runs": nonfinite,
            "at_init": init,
        },
        outcome=outcome,
        summary=summary,
        figures={"c6_clipping.png": _figure(sz, rate, final, clipped, init, v)},
        seeds=n,
    )
    return outcome


def _reproductions(sz, rate, final, clipped) -> tuple[C.Reproduction, ...]:
    if "rnn" not in rate:
        return ()
    off, on = np.asarray(rate["rnn"]["no clipping"]), np.asarray(rate["rnn"]["clip 1.0"])
    decided = off.sum() > 0
    return (
        C.Reproduction(
            "Pascanu, Mikolov and Bengio 2013 (clip_by_global_norm 1.0)",
            f"tanh RNN, adding T={sz['T']}, SGD lr {sz['lr']:g}, g = {', '.join(f'{g:g}' for g in sz['gains'])}, "
            f"{sz['seeds']} seeds each",
            "clipping prevents the divergence that exploding gradients cause",
            f"diverged without clipping {', '.join(f'{x:.2f}' for x in off)}; "
            f"with {', '.join(f'{x:.2f}' for x in on)}; "
            f"steps clipped {', '.join(f'{x:.2f}' for x in clipped['rnn']['clip 1.0'])}",
            bool(on.sum() < off.sum() and np.all(on <= off)) if decided else None,
        ),
    )


def _summary(sz, rate, final, clipped, spike, init) -> str:
    best = float(np.nanmin([x for c in final for lab in final[c] for x in final[c][lab]] + [np.inf]))
    rows = []
    for c in sz["cells"]:
        for lab in CLIPS:
            for j, g in enumerate(sz["gains"]):
                ini = f"{init['fraction'][c][j]:.2f}" if init and c in init["fraction"] else "—"
                rows.append(
                    f"| {c} | {lab} | {g:g} | {rate[c][lab][j]:.2f} | {C.fmt(final[c][lab][j])} | "
                    f"{f'{clipped[c][lab][j]:.2f}' if CLIPS[lab] else '—'} | {C.fmt(spike[c][lab][j])} | {ini} |"
                )
    src = (
        f"c6_explosion ({init['scale']} scale, T={init['T']}, H={init['H']}, ‖g‖ > {init['threshold']:g} or non-finite)"
        if init
        else "c6_explosion had not written results; run it first for this column"
    )
    return (
        f"Adding task T={sz['T']}, H={sz['H']}, batch {sz['batch']}, SGD lr {sz['lr']:g}, {sz['steps']} steps, "
        f"{sz['seeds']} seeds per (cell, clipping, g); W_h ~ N(0, g²/H) for both cells (LSTM forget bias 1). "
        f"Diverged: non-finite loss/gradient or final loss > {BLOWUP:g}× baseline. r = final loss / (1/6) over "
        f"the seeds that did not diverge. At-init explosion fraction from {src}. "
        f"Best median final r anywhere: {C.fmt(best)}; "
        + (NO_LEARNING if best > 1 else "")
        + "\n\n| cell | clipping | g | divergence rate | median final r | steps clipped | max segment r | "
        "explosion at init |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(rows)
    )


def _figure(sz, rate, final, clipped, init, v):
    import matplotlib.pyplot as plt

    g = np.asarray(sz["gains"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = {"rnn": "C3", "lstm": "C0"}
    styles = {"no clipping": ("-", "o", "full"), "clip 1.0": ("--", "s", "none")}
    for c in sz["cells"]:
        for lab in CLIPS:
            ls, mk, fill = styles[lab]
            kw = dict(color=colors[c], ls=ls, marker=mk, fillstyle=fill, ms=7, label=f"{c}, {lab}")
            axes[0].plot(g, rate[c][lab], **kw)
            axes[1].plot(g, np.asarray(final[c][lab], float), **kw)
            if CLIPS[lab] is not None:
                axes[2].plot(g, clipped[c][lab], **kw)
        if init and c in init["fraction"]:
            axes[0].plot(g, init["fraction"][c], color=colors[c], ls=":", marker="x", label=f"{c}, explodes at init")
    axes[0].set_ylim(-0.05, 1.05)
    axes[0].set_ylabel("fraction of seeds")
    axes[0].set_title("divergence rate in training (and explosion at init)")
    axes[1].axhline(1.0, color="k", lw=0.8, ls="--", label="baseline 1/6")
    axes[1].set_ylabel("final loss / baseline (median, non-diverged seeds)")
    axes[1].set_title("where training survives, what it reaches")
    axes[2].set_ylim(-0.05, 1.05)
    axes[2].set_ylabel("fraction of steps with ‖g‖ > 1 (before divergence)")
    axes[2].set_title("how often clipping acts (clipped runs)")
    for ax in axes:
        ax.set_xlabel("recurrent weight scale g (W_h ~ N(0, g²/H))")
        ax.set_xticks(g, [f"{x:g}" for x in g])
        ax.legend(fontsize=7)
    n_runs = len(g) * len(sz["cells"]) * sz["seeds"]
    tot = {lab: sum(sum(rate[c][lab]) for c in sz["cells"]) * sz["seeds"] for lab in CLIPS}
    fig.suptitle(
        f"C6 training ({v}): diverged runs without clipping {tot['no clipping']:.0f} of {n_runs}, with clip 1.0 "
        f"{tot['clip 1.0']:.0f} of {n_runs} (SGD lr {sz['lr']:g}, adding T={sz['T']}, {sz['seeds']} seeds per point)"
    )
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
