"""The joint distance × hop-class map of an LSTM gradient at initialisation.

‖G_{d,k}‖: the part of dL/dθ through θ's use d steps before the loss, carried by paths
that cross exactly k hop edges (h_{t-1} → gates; the last class collects ≥ K), median
over seeds, drawn with ``gradpaths.plots.distance_hop_heatmap``. Data: the forget-bias
sweep of ``_probe.lstm_bias_sweep`` (shared with C5 and C7), loss r·h_{T-1}. The white
line is the mean hop count Σ_k k‖G_{d,k}‖/Σ_k‖G_{d,k}‖ at each distance.

There is no claim here; the verdict answers one question about the map: is the highway
(0 hops) the largest class at the longest distance? Per bias shown, the fraction of seeds
in which it is, with its Wilson 95 % interval: yes if the interval lies above 1/2, no if
below. SUPPORTED if yes for every bias shown, NOT SUPPORTED if no for every one, NUANCED
if yes for some and no for others, INCONCLUSIVE if undecided biases leave it open (``_probe.cases``).
"""

from __future__ import annotations

import numpy as np

import gradpaths as gp
from experiments import _common as C
from experiments import _probe as P
from experiments import _stats as S
from gradpaths.plots import distance_hop_heatmap

CLAIM, NAME = "", "distance_hops_map"
TITLE = "The distance × hop-class map of the LSTM gradient"
SHOWN = ("b_f=1", "b_f=3", "chrono")


def verdict(highway_largest: list) -> tuple[str, list[S.Decision]]:
    """highway_largest: per bias shown, a boolean per seed (is the 0-hop class the largest at the longest distance)."""
    if not len(highway_largest):
        raise ValueError("verdict needs the per-seed answer for at least one bias")
    parts = [S.decide(S.rate(x), null=0.5, what="fraction of seeds") for x in highway_largest]
    return P.cases([p.verdict for p in parts]), parts


def run(args: C.Args) -> C.Outcome:
    sz, res = P.lstm_bias_sweep(args)
    far, k1 = sz["T"] - 1, sz["max_hops"] + 1
    maps = {s: np.median(res[s]["norm_dk"], 0) for s in SHOWN}  # [T, K+1]
    mean_hops = {s: (m * np.arange(k1)).sum(1) / np.where(m.sum(1) > 0, m.sum(1), np.nan) for s, m in maps.items()}
    largest = {s: np.argmax(res[s]["norm_dk"][:, far], -1) for s in SHOWN}  # [seed]
    v, parts = verdict([largest[s] == 0 for s in SHOWN])
    lab = lambda k: f"≥{k}" if k == k1 - 1 else str(k)
    dom = {s: lab(int(np.bincount(largest[s], minlength=k1).argmax())) for s in SHOWN}
    headline = f"largest hop class at d={far} (most seeds, n={sz['seeds']}): " + ", ".join(
        f"{s}: {dom[s]} (0-hop largest in {p.estimate:.2f} [{p.interval[0]:.2f}, {p.interval[1]:.2f}])"
        for s, p in zip(SHOWN, parts)
    )
    summary = (
        f"LSTM H={sz['H']}, T={sz['T']}, batch {sz['B']}, {sz['seeds']} seeds (median map), max_hops={sz['max_hops']}; "
        "loss r·h_{T-1}. Fractions carry Wilson 95% intervals.\n\n| setting | largest class at d = T-1 (most seeds) "
        "| fraction of seeds with the highway largest [95% CI] | mean hops at d = T-1 | mean hops at d = T/2 |\n"
        "|---|---|---|---|---|\n"
        + "\n".join(
            f"| {s} | {dom[s]} | {p.estimate:.2f} [{p.interval[0]:.2f}, {p.interval[1]:.2f}] | "
            f"{C.fmt(mean_hops[s][far])} | {C.fmt(mean_hops[s][far // 2])} |"
            for s, p in zip(SHOWN, parts)
        )
        + f"\n\nThe last class collects ≥{k1 - 1} hops, so where it is large the mean hop count is a lower bound."
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "distance_hops_map.png")
    fig = _figure(maps, mean_hops, dom, far)
    config = sz
    data = {"median_norm_dk": maps, "mean_hops": mean_hops, "largest_far": largest, "decisions": parts}
    return P.save(args, NAME, outcome, summary, fig, config, data, sz["seeds"])


def _figure(maps, mean_hops, dom, far):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(5.2 * len(maps), 4.0), sharey=True, layout="constrained")
    top = max(np.log10(m[m > 0].max()) for m in maps.values())
    for ax, (s, m) in zip(axes, maps.items()):
        distance_hop_heatmap(gp.Decomposition(total=None, by_distance_hops={"norm": m}), ax=ax, title=s)
        ax.images[0].set_clim(top - 10, top)  # one colour scale for every panel: 10 decades
        ax.plot(np.arange(m.shape[0]), mean_hops[s], color="w", lw=1.2, label="mean hop count")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"LSTM at init: ‖G(d, k)‖ by distance and hop class; the largest class at d={far} is "
        + ", ".join(f"{k} hops ({s})" for s, k in dom.items())
    )
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
