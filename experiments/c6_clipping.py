"""C6 in training: does clip_by_global_norm(1) stop divergence, and does the LSTM diverge less?

Setting (Pascanu, Mikolov and Bengio 2013): plain SGD (lr 0.1) on the adding task, tanh
RNN and LSTM (forget bias 1), both with W_h ~ N(0, g²/H) ("gaussian", as in c6_explosion)
at recurrent scales g from stable to large. Whether the gradient explodes at
initialisation at each g is c6_explosion's measurement, shown beside (at g = 1 and 2 it
measured no explosion at init; divergence in training there comes from the updates).
Each (cell, clipping) is one compiled trainer; the scales are arms (W_h rescaled after
initialisation, the same seeds for every g).

A seed *diverges* when its loss or gradient becomes non-finite or its final loss is over
``BLOWUP`` = 10 × ``Task.baseline``. Criterion (set before the run), each part a
difference of divergence rates pooled over the scales, with Newcombe's 95% interval
through ``_stats.decide``:

- clipping lowers the divergence rate: rate(no clipping) − rate(clip 1), both cells;
- the LSTM diverges less: rate(rnn) − rate(lstm), unclipped.

``combine_parts``: SUPPORTED if both are, NOT SUPPORTED if both go the other way,
NUANCED if one each way, INCONCLUSIVE if either is undecided (e.g. nothing diverges).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from experiments import _common as C
from experiments import _stats as S
from experiments import _train as TR

CLAIM, NAME = "C6", "c6_clipping"
TITLE = "C6 in training: clipping against divergence, RNN against LSTM"
BLOWUP = 10.0
CELLS = ("rnn", "lstm")
CLIPS = {"no clipping": None, "clip 1.0": 1.0}


def sizes(args: C.Args) -> dict:
    return args.picks(
        T=(10, 50, 100),
        H=(4, 16, 64),
        batch=(8, 32, 64),
        steps=(20, 200, 1000),
        segment=(10, 50, 100),
        gains=((4.0,), (1.0, 2.0, 3.0), (1.0, 1.5, 2.0, 3.0, 4.0)),
        cells=(("rnn",), CELLS, CELLS),
    ) | {"seeds": args.n_seeds(2, 8, 32)}


def diverged(record: dict, arm: str) -> np.ndarray:
    """Per seed: non-finite at some step, or final loss > BLOWUP × baseline."""
    r = TR.final_ratio(record, arm)
    return ~np.isfinite(r) | (r > BLOWUP)


def verdict(div: dict[tuple[str, str], np.ndarray]) -> tuple[str, dict[str, S.Decision]]:
    """div: {(cell, clipping label): diverged per run, pooled over g} for CELLS × CLIPS."""
    if set(div) != {(c, k) for c in CELLS for k in CLIPS}:
        raise ValueError(f"div needs every (cell, clipping) of {CELLS} × {tuple(CLIPS)}, got {sorted(div)}")
    off = np.concatenate([div[(c, "no clipping")] for c in CELLS])
    on = np.concatenate([div[(c, "clip 1.0")] for c in CELLS])
    k = lambda x: (int(np.sum(x)), len(x))
    lstm = div[("lstm", "no clipping")]
    parts = {
        "clipping": S.decide(S.newcombe(*k(off), *k(on)), what="divergence rate unclipped − clipped"),
        "lstm": S.decide(
            S.newcombe(*k(div[("rnn", "no clipping")]), *k(lstm)), what="unclipped divergence rate rnn − lstm"
        )
        if len(lstm)
        else S.inconclusive("the LSTM was not run (quick scale)"),
    }
    return S.combine_parts(parts.values()), parts


def at_init(args: C.Args, gains) -> dict | None:
    """c6_explosion's explosion fractions at these gains ({cell: [fraction per g]}), if it ran."""
    path = Path(args.out) / "c6_explosion" / "results.json"
    if not path.exists():
        return None
    r = json.loads(path.read_text())
    frac, grid = r["data"].get("fraction", {}), list(r["config"].get("gains", []))
    if not all(g in grid for g in gains):
        return None
    return {c: [frac[c][grid.index(g)] for g in gains] for c in frac}


def run(args: C.Args) -> C.Outcome:
    sz = sizes(args)
    arms = [f"g={g:g}" for g in sz["gains"]]
    g_R = jnp.repeat(jnp.asarray(sz["gains"]), sz["seeds"])
    recs = {
        (c, lab): TR.train(
            args,
            TR.config(
                args,
                task="adding",
                T=sz["T"],
                cell=c,
                hidden_size=sz["H"],
                recurrent_init="gaussian",
                batch_size=sz["batch"],
                steps=sz["steps"],
                segment=sz["segment"],
                optimizer="sgd",
                lr=0.1,
                clip_norm=clip,
            ),
            sz["seeds"],
            arms=arms,
            init=TR.scale_recurrent,
            per_run=(g_R,),
        )
        for c in sz["cells"]
        for lab, clip in CLIPS.items()
    }
    per_g = {key: {a: diverged(r, a) for a in arms} for key, r in recs.items()}
    pooled = {key: np.concatenate(list(d.values())) for key, d in per_g.items()}
    if "lstm" not in sz["cells"]:  # quick scale: the RNN only
        pooled |= {("lstm", lab): np.zeros(0, bool) for lab in CLIPS}
    v, parts = verdict(pooled)
    init = at_init(args, sz["gains"])
    n = sz["seeds"]
    rate = {key: [S.rate(d[a]) for a in arms] for key, d in per_g.items()}
    headline = (
        f"divergence (SGD lr 0.1, adding T={sz['T']}) at g = {', '.join(a[2:] for a in arms)}, {n} seeds each: "
        + "; ".join(f"{c} {lab} {'/'.join(str(int(e.value * n)) for e in rate[(c, lab)])}" for c, lab in recs)
        + f" — clipping lowers it: {parts['clipping'].text()}; LSTM less than RNN: {parts['lstm'].text()}"
        + (f"; explodes at init (c6_explosion): {init}" if init else "")
    )
    rows = [
        [c, lab, a, rate[(c, lab)][j].text(2), C.fmt(TR.median_ratio(TR.final_ratio(recs[(c, lab)], a)))]
        for c, lab in recs
        for j, a in enumerate(arms)
    ]
    summary = (
        f"Adding T={sz['T']}, H={sz['H']}, batch {sz['batch']}, SGD lr 0.1, {sz['steps']} steps, {n} seeds per "
        f"(cell, clipping, g); W_h ~ N(0, g²/H). Diverged: non-finite, or final loss > {BLOWUP:g}× baseline.\n\n"
        + "\n".join(f"- {k}: {d.text()}" for k, d in parts.items())
        + "\n\n"
        + C.table(["cell", "clipping", "g", "divergence rate [Wilson 95%]", "median final r"], rows)
    )
    reps = (
        C.Reproduction(
            "Pascanu, Mikolov and Bengio 2013 (clip_by_global_norm 1.0)",
            f"tanh RNN and LSTM, adding T={sz['T']}, SGD lr 0.1, g = {', '.join(a[2:] for a in arms)}",
            "clipping prevents the divergence that exploding gradients cause",
            parts["clipping"].text(),
            S.agrees(parts["clipping"]),
        ),
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c6_clipping.png", reps)
    data = {
        "diverged": {f"{c}|{lab}": d for (c, lab), d in per_g.items()},
        "decisions": {k: d._asdict() for k, d in parts.items()},
        "at_init": init,
    }
    return C.save(args, NAME, outcome, summary, _figure(sz, rate, init, v), sz, data, n)


def _figure(sz, rate, init, v):
    import matplotlib.pyplot as plt

    g = np.asarray(sz["gains"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = {"rnn": "C3", "lstm": "C0"}
    for i, (c, lab) in enumerate(rate):
        style = {"color": colors[c], "ls": "-" if lab == "no clipping" else "--", "marker": "o", "capsize": 4}
        C.errorbars(ax, g + (i - 1.5) * 0.04, rate[(c, lab)], label=f"{c}, {lab}", **style)
        if init and c in init and lab == "no clipping":
            ax.plot(g, init[c], color=colors[c], ls=":", marker="x", label=f"{c}: explodes at init")
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(g, [f"{x:g}" for x in g])
    ax.set_xlabel("recurrent weight scale g (W_h ~ N(0, g²/H))")
    ax.set_ylabel("divergence rate (Wilson 95%)")
    ax.legend(fontsize=7)
    ax.set_title(f"C6 training: {v} ({sz['seeds']} seeds per point)")
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
