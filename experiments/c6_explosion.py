"""C6 at initialisation: how often the gradient explodes, RNN against LSTM (and GRU).

Setting: for each cell (tanh RNN, LSTM with forget bias 1, GRU) the recurrent blocks
are W_h ~ N(0, g²/H) ("gaussian" init, the same recurrent_init and scale g for every
cell), W_x ~ N(0, 1/I), inputs N(0, 1), loss (1/T) Σ_τ r·h_τ with a random unit readout
r. For many seeds (one jit(vmap)) and each g we record ‖dL/dθ‖ and whether every
number is finite (``Decomposition.finite``). A network "explodes" if its gradient is
non-finite or ‖g‖ > EXPLODE.

Criterion (CLAIMS.md, the at-initialisation half): the LSTM explosion fraction is below
the RNN's at matched weight scales. At each scale, the difference RNN − LSTM of the
fractions gets Newcombe's 95 % interval: the LSTM is lower there if it lies above 0,
higher if below 0. SUPPORTED if lower at one or more scales and higher at none; NOT
SUPPORTED if higher at one or more and lower at none; NUANCED if both; INCONCLUSIVE if
no scale separates the cells (the grid or the seeds are too small). The clipping half
of C6 is c6_clipping.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import gradpaths as gp
from experiments import _common as C
from experiments import _probe as P
from experiments import _stats as S
from gradpaths import analysis as A

CLAIM, NAME = "C6", "c6_explosion"
TITLE = "C6 at initialisation: explosion rate of RNN against LSTM and GRU gradients"
EXPLODE = 1e3
CELLS = {
    "rnn": lambda h: gp.rnn(h, recurrent_init="gaussian"),
    "lstm": lambda h: gp.lstm(h, recurrent_init="gaussian"),
    "gru": lambda h: gp.gru(h, recurrent_init="gaussian"),
}


def grad_norm(cell, params, xs, r):
    """(‖dL/dθ‖, finite) for the mean readout loss; the norm in float64 (no overflow of Σ g²)."""
    w = jnp.full(xs.shape[-2], 1.0 / xs.shape[-2], xs.dtype)
    d = gp.decompose(cell, params, xs, lambda hs: A.readout_loss(hs, r, w), parts=())
    return jnp.linalg.norm(A.flat_lead(d.total, 0)), d.finite


def exploded(norm, finite):
    return ~np.asarray(finite, bool) | ~(np.asarray(norm, float) <= EXPLODE)


def verdict(rnn_k: list[int], lstm_k: list[int], n: int) -> tuple[str, list[S.Decision]]:
    """Exploded counts of n seeds per weight scale (matched): the rule in the module docstring."""
    if len(rnn_k) != len(lstm_k) or not rnn_k:
        raise ValueError(f"need one count per scale for both cells, got {len(rnn_k)} and {len(lstm_k)}")
    parts = [S.decide(S.newcombe(r, n, m, n), what="RNN − LSTM explosion fraction") for r, m in zip(rnn_k, lstm_k)]
    lower = any(p.verdict == C.SUPPORTED for p in parts)
    higher = any(p.verdict == C.NOT_SUPPORTED for p in parts)
    v = C.NUANCED if lower and higher else C.SUPPORTED if lower else C.NOT_SUPPORTED if higher else C.INCONCLUSIVE
    return v, parts


def run(args: C.Args) -> C.Outcome:
    n_t, n_h, n_b = args.pick((40, 16, 2), (100, 32, 4), (500, 128, 8))
    grid = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0)
    gains = args.pick((1.0, 4.0, 8.0, 16.0), grid, grid)
    n_seeds = args.n_seeds(8, 64, 512)
    n_i, dtype = 4, args.dtype
    g_arr = jnp.asarray(gains, dtype)
    norm, finite = {}, {}
    for i, (name, make) in enumerate(CELLS.items()):
        cell = make(n_h)
        data = P.draws(cell, jax.random.key(60 + i), n_seeds, n_i, n_b, n_t, dtype)
        fn = lambda p, x, r_, g, cell=cell: grad_norm(cell, {**p, "W_h": p["W_h"] * g}, x, r_)
        norm[name], finite[name] = P.over_seeds_and(fn, data, g_arr)  # [seed, gain]
        C.progress(f"  C6 {name}: {n_seeds} seeds x {len(gains)} scales done")
    count = {k: exploded(norm[k], finite[k]).sum(0) for k in CELLS}
    frac = {k: count[k] / n_seeds for k in CELLS}
    nonfinite = {k: int((~finite[k]).sum()) for k in CELLS}
    v, parts = verdict(list(count["rnn"]), list(count["lstm"]), n_seeds)
    diffs = "; ".join(
        f"g={g:g}: {p.estimate:+.2f} [{p.interval[0]:+.2f}, {p.interval[1]:+.2f}]" for g, p in zip(gains, parts)
    )
    headline = (
        f"fraction with ‖g‖ > {EXPLODE:g} or non-finite at g = {', '.join(f'{g:g}' for g in gains)}: "
        + "; ".join(f"{k} {', '.join(f'{x:.2f}' for x in frac[k])}" for k in CELLS)
        + f" (n={n_seeds} seeds); RNN − LSTM with 95% CI where they differ: "
        + (
            "; ".join(
                f"g={g:g}: {p.estimate:+.2f} [{p.interval[0]:+.2f}, {p.interval[1]:+.2f}]"
                for g, p in zip(gains, parts)
                if p.verdict != C.INCONCLUSIVE
            )
            or "none — no scale separates the cells"
        )
    )
    med = {k: np.median(np.log10(np.where(finite[k], norm[k], np.nan)), 0) for k in CELLS}
    rows = "\n".join(
        f"| {g:g} | " + " | ".join(f"{frac[k][j]:.3f} ({C.fmt(10 ** med[k][j])})" for k in CELLS) + " |"
        for j, g in enumerate(gains)
    )
    summary = (
        f"H={n_h}, T={n_t}, batch {n_b}, {n_seeds} seeds per point, W_h ~ N(0, g²/H) for every cell, loss "
        f"(1/T) Σ r·h_τ. Explodes: ‖g‖ > {EXPLODE:g} or non-finite. Non-finite gradients: "
        + ", ".join(f"{k} {nonfinite[k]}" for k in CELLS)
        + f". At-initialisation half of C6; clipping is c6_clipping. Verdict {v}. RNN − LSTM fraction "
        + f"(Newcombe 95% CI): {diffs}.\n\n"
        "| g | " + " | ".join(f"{k}: fraction exploded (median ‖g‖)" for k in CELLS) + " |\n|---|---|---|---|\n" + rows
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c6_explosion.png")
    fig = _figure(gains, norm, finite, frac, count, n_seeds, parts)
    config = {"T": n_t, "H": n_h, "B": n_b, "I": n_i, "gains": gains, "threshold": EXPLODE}
    data = {"fraction": frac, "nonfinite": nonfinite, "log10_norm_median": med, "differences": parts}
    return P.save(args, NAME, outcome, summary, fig, config, data, n_seeds)


def _figure(gains, norm, finite, frac, count, n_seeds, parts):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    g = np.asarray(gains)
    for j, k in enumerate(CELLS):
        lo, hi = np.array([S.wilson(c, n_seeds)[1:3] for c in count[k]]).T
        axes[0].errorbar(g, frac[k], yerr=[frac[k] - lo, hi - frac[k]], marker="o", capsize=3, label=k, color=f"C{j}")
        y = np.log10(np.where(finite[k], norm[k], np.nan))
        y = np.where(np.isfinite(y), y, np.nanmax(np.where(np.isfinite(y), y, -np.inf)) + 1)
        axes[1].plot(g, np.median(y, 0), marker="o", color=f"C{j}", label=k)
        axes[1].fill_between(g, np.percentile(y, 10, 0), np.percentile(y, 90, 0), color=f"C{j}", alpha=0.2)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xticks(g, [f"{x:g}" for x in g])
    axes[0].set_xlabel("recurrent weight scale g (W_h ~ N(0, g²/H))")
    axes[0].set_ylabel(f"fraction with ‖g‖ > {EXPLODE:g} (Wilson 95% CI)")
    axes[0].legend()
    axes[1].axhline(np.log10(EXPLODE), color="k", ls=":", lw=0.8, label="threshold")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xticks(g, [f"{x:g}" for x in g])
    axes[1].set_xlabel("recurrent weight scale g")
    axes[1].set_ylabel("log10 ‖dL/dθ‖ (median, 10–90 %)")
    axes[1].legend()
    onset = {k: next((f"{x:g}" for x, f in zip(gains, frac[k]) if f >= 0.5), f"> {gains[-1]:g}") for k in CELLS}
    fewer = sum(p.verdict == C.SUPPORTED for p in parts)
    more = sum(p.verdict == C.NOT_SUPPORTED for p in parts)
    fig.suptitle(
        f"C6 (at init, {n_seeds} seeds): explosion onset (≥ 50 %) at g = "
        + ", ".join(f"{onset[k]} ({k})" for k in CELLS)
        + f";\nLSTM fraction below the RNN's (95% CI) at {fewer} scales, above at {more}"
    )
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
