"""C7 at initialisation: the long-range LSTM gradient against the forget-gate bias.

The same sweep as c5_paths (shared cached points): an LSTM at initialisation with
forget bias b_f ∈ {-2, 0, 1, 2, 3, 5} and chrono initialisation, the same weights for
every bias, loss r·h_{T-1}. Measured per bias (medians and spread over seeds): ‖G_{d=100}‖,
the parameter gradient through θ's use 100 steps before the loss (d = 20 at --quick), its
size relative to ‖g‖, and the highway (0-hop) projection share of it.

Criterion (CLAIMS.md, the at-initialisation half): the long-range gradient rises
monotonically with forget bias. SUPPORTED if the median ‖G_{d=100}‖ strictly increases
along b_f = -2 < 0 < 1 < 2 < 3 < 5; NUANCED if it is higher at b_f = 5 than at -2 but
not monotone; NOT SUPPORTED otherwise. Chrono is reported beside the sweep (its b_f is
a distribution, not a point on the axis). The training half of C7 (training success on
long lags, the selective-forget task) is c7_forget_training and c7_selective.
"""

from __future__ import annotations

import numpy as np

from experiments import _common as C
from experiments import c5_paths as P
from experiments.c2_vanishing import band

CLAIM, NAME = "C7", "c7_forget_bias"
TITLE = "C7 at initialisation: long-range gradient against forget bias"


def verdict(g_at: list[float]) -> str:
    """g_at: median ‖G_{d=100}‖ per forget bias, in increasing bias order."""
    if len(g_at) < 2:
        raise ValueError(f"verdict needs the gradient at two or more biases, got {len(g_at)}")
    g = np.asarray(g_at, float)
    if np.all(np.isfinite(g)) and np.all(np.diff(g) > 0):
        return C.SUPPORTED
    return C.NUANCED if g[-1] > g[0] else C.NOT_SUPPORTED


def run(args: C.Args) -> C.Outcome:
    sz = P.sizes(args)
    res = P.sweep(args)
    stats = P.summarise(res, "at")
    sweep_settings = P.SETTINGS[: len(P.BIASES)]
    g_at = [float(stats[s]["norm"]) for s in sweep_settings]
    v = verdict(g_at)
    drops = [f"{a}→{b}" for a, b, x, y in zip(sweep_settings, sweep_settings[1:], g_at, g_at[1:]) if y <= x]
    d = sz["d_at"]
    headline = (
        f"median ‖G_d={d}‖ over b_f {', '.join(f'{b:g}' for b in P.BIASES)}: "
        + ", ".join(C.fmt(x) for x in g_at)
        + f" (chrono {C.fmt(float(stats['chrono']['norm']))}); highway share "
        + ", ".join(C.fmt(float(stats[s]["proj_share"][0])) for s in P.SETTINGS)
        + (f"; falls at {', '.join(drops)}" if drops else "; monotone")
    )
    rows = "\n".join(
        f"| {s} | {C.fmt(float(stats[s]['norm']))} | {C.fmt(float(stats[s]['size']))} | "
        f"{C.fmt(float(stats[s]['proj_share'][0]))} | {C.fmt(float(stats[s]['mean_hops']))} |"
        for s in P.SETTINGS
    )
    summary = (
        f"LSTM H={sz['H']}, T={sz['T']}, batch {sz['B']}, {sz['seeds']} seeds (medians), {sz['dtype']}, "
        "loss r·h_{T-1}, "
        f"distance d = {d}. At-initialisation half of C7 only; training is in c7_forget_training and "
        "c7_selective.\n\n"
        f"| setting | ‖G_d={d}‖ | ‖G_d={d}‖/‖g‖ | highway projection share | mean hops |\n|---|---|---|---|---|\n"
        + rows
        + ("\n\nNot monotone: the gradient falls at " + ", ".join(drops) + "." if drops else "")
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c7_forget_bias.png")
    fig = _figure(res, stats, sz, g_at, drops)
    C.write_outputs(
        args,
        NAME,
        config=sz,
        data={"at_distance": stats, "median_norm": dict(zip(sweep_settings, g_at))},
        outcome=outcome,
        summary=summary,
        figures={"c7_forget_bias.png": fig},
        seeds=sz["seeds"],
    )
    return outcome


def _figure(res, stats, sz, g_at, drops):
    import matplotlib.pyplot as plt

    d = sz["d_at"]
    sweep_settings = P.SETTINGS[: len(P.BIASES)]
    b = np.asarray(P.BIASES)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    for ax, field, lab in ((axes[0], "norm", f"‖G_d={d}‖"), (axes[0], "size", f"‖G_d={d}‖ / ‖g‖")):
        y = np.array([np.asarray(res[s]["at"][field], float) for s in sweep_settings]).T  # [seed, bias]
        col = "C0" if field == "norm" else "C1"
        band(ax, b, np.maximum(y, 1e-300), col, lab)
        ax.lines[-1].set_marker("o")
        yc = np.asarray(res["chrono"]["at"][field], float)
        ax.errorbar(
            [b[-1] + 1],
            [np.median(yc)],
            yerr=[[np.median(yc) - np.percentile(yc, 25)], [np.percentile(yc, 75) - np.median(yc)]],
            fmt="s",
            color=col,
        )
    axes[0].set_yscale("log")
    axes[0].set_xticks([*b, b[-1] + 1], [f"{x:g}" for x in b] + ["chrono"])
    axes[0].set_xlabel("forget-gate bias b_f at initialisation")
    axes[0].set_ylabel(f"gradient at distance d = {d} steps (median, IQR)")
    axes[0].legend(fontsize=8)
    sh = np.array([np.asarray(res[s]["at"]["proj_share"], float)[:, 0] for s in P.SETTINGS]).T
    band(axes[1], np.arange(len(P.SETTINGS)), np.maximum(np.abs(sh), 1e-300), "C3", "|highway projection share|")
    axes[1].lines[-1].set_marker("o")
    axes[1].set_yscale("log")
    axes[1].axhline(0.5, color="k", ls=":", lw=0.8)
    axes[1].set_xticks(range(len(P.SETTINGS)), P.SETTINGS, fontsize=8)
    axes[1].set_ylabel(f"highway (0-hop) share of G_d={d}")
    axes[1].legend(fontsize=8)
    hwy = [float(stats[s]["proj_share"][0]) for s in P.SETTINGS]
    fig.suptitle(
        f"C7 (at init): the gradient at d={d} "
        + (
            f"rises monotonically with b_f, {C.fmt(g_at[0])} → {C.fmt(g_at[-1])}"
            if not drops
            else f"is not monotone in b_f (falls at {', '.join(drops)})"
        )
        + f";\nthe highway carries at most {C.fmt(max(hwy[:-1]))} of it over the b_f sweep, "
        + f"{C.fmt(hwy[-1])} with chrono"
    )
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
