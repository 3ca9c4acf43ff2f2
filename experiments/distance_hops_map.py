"""The joint distance × hop-class map of an LSTM gradient at initialisation.

‖G_{d,k}‖: the part of dL/dθ through θ's use d steps before the loss, carried by paths
that cross exactly k hop edges (h_{t-1} → gates; the last class collects ≥ K), median
over seeds, drawn with ``gradpaths.plots.distance_hop_heatmap``. Data: the c5_paths
forget-bias sweep (shared cached points), loss r·h_{T-1}. The white line is the mean hop
count Σ_k k‖G_{d,k}‖/Σ_k‖G_{d,k}‖ at each distance.

There is no claim here; the verdict answers one question about the map: does the
highway (0 hops) carry the largest class at the longest distance? SUPPORTED if it does
for every bias shown, NOT SUPPORTED if for none, NUANCED otherwise.
"""

from __future__ import annotations

import numpy as np

import gradpaths as gp
from experiments import _common as C
from experiments import c5_paths as P
from gradpaths.plots import distance_hop_heatmap

CLAIM, NAME = "", "distance_hops_map"
TITLE = "The distance × hop-class map of the LSTM gradient"
SHOWN = ("b_f=1", "b_f=3", "chrono")


def verdict(dominant_far: list[int]) -> str:
    """dominant_far: the largest hop class at the longest distance, one per bias shown."""
    if not dominant_far:
        raise ValueError("verdict needs the dominant hop class for at least one bias")
    hwy = [k == 0 for k in dominant_far]
    return C.all_some_none(hwy)


def run(args: C.Args) -> C.Outcome:
    sz = P.sizes(args)
    res = P.sweep(args)
    maps = {s: np.median(np.asarray(res[s]["norm_dk"], float), 0) for s in SHOWN}  # [T, K+1]
    k1 = sz["max_hops"] + 1
    hops = np.arange(k1)
    mean_hops = {s: (m * hops).sum(1) / np.where(m.sum(1) > 0, m.sum(1), np.nan) for s, m in maps.items()}
    far = sz["T"] - 1
    dominant = {s: int(np.argmax(m[far])) for s, m in maps.items()}
    v = verdict(list(dominant.values()))
    lab = lambda k: "≥" + str(k) if k == k1 - 1 else str(k)
    headline = f"dominant hop class at d={far}: " + ", ".join(f"{s}: {lab(k)}" for s, k in dominant.items())
    summary = (
        f"LSTM H={sz['H']}, T={sz['T']}, batch {sz['B']}, {sz['seeds']} seeds (median map), max_hops={sz['max_hops']}; "
        "loss r·h_{T-1}.\n\n| setting | dominant class at d = T-1 | mean hops at d = T-1 | mean hops at d = T/2 |\n"
        "|---|---|---|---|\n"
        + "\n".join(
            f"| {s} | {lab(dominant[s])} | {C.fmt(mean_hops[s][far])} | {C.fmt(mean_hops[s][far // 2])} |"
            for s in SHOWN
        )
        + f"\n\nThe last class collects ≥{k1 - 1} hops, so where it is large the mean hop count is a lower bound "
        "and the true peak of the hop distribution lies beyond it."
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "distance_hops_map.png")
    fig = _figure(maps, mean_hops, dominant, sz, lab)
    C.write_outputs(
        args,
        NAME,
        config=sz,
        data={"median_norm_dk": maps, "mean_hops": mean_hops, "dominant_far": dominant},
        outcome=outcome,
        summary=summary,
        figures={"distance_hops_map.png": fig},
        seeds=sz["seeds"],
    )
    return outcome


def _figure(maps, mean_hops, dominant, sz, lab):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(5.2 * len(maps), 4.0), sharey=True, layout="constrained")
    top = max(np.log10(m[m > 0].max()) for m in maps.values())
    for ax, (s, m) in zip(axes, maps.items()):
        distance_hop_heatmap(gp.Decomposition(total=None, by_distance_hops={"norm": m}), ax=ax, title=s)
        ax.images[0].set_clim(top - 10, top)  # one colour scale for every panel: 10 decades
        ax.plot(np.arange(m.shape[0]), mean_hops[s], color="w", lw=1.2, label="mean hop count")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"LSTM at init: ‖G(d, k)‖ by distance and hop class; the largest class at d={sz['T'] - 1} is "
        + ", ".join(f"{lab(k)} hops ({s})" for s, k in dominant.items())
    )
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
