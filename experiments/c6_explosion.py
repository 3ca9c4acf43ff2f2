"""C6 at initialisation: how often the gradient explodes, RNN against LSTM (and GRU).

Setting: for each cell (tanh RNN, LSTM with forget bias 1, GRU) the recurrent blocks
are W_h ~ N(0, g²/H) ("gaussian" init, the same recurrent_init and scale g for every
cell), W_x ~ N(0, 1/I), inputs N(0, 1), loss (1/T) Σ_τ r·h_τ with a random unit readout
r. For many seeds (one jit(vmap)) and each g we record ‖dL/dθ‖ and whether every
number is finite (``Decomposition.finite``). A network "explodes" if its gradient is
non-finite or ‖g‖ > EXPLODE.

Criterion (CLAIMS.md, the at-initialisation half): the LSTM explosion fraction is below
the RNN's at matched weight scales. Over the scales where either cell explodes at all:
SUPPORTED if the LSTM fraction is lower at one or more scales and higher at none;
NOT SUPPORTED if it is lower at none; NUANCED otherwise. INCONCLUSIVE if neither cell
explodes anywhere in the grid (the grid is too small to test the claim). The clipping
half of C6 is c6_clipping.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import gradpaths as gp
from experiments import _common as C
from experiments.c2_vanishing import make_batches, readout_loss
from gradpaths.plots import norms

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
    d = gp.decompose(cell, params, xs, lambda hs: readout_loss(hs, r, w), parts=())
    return norms(jax.tree.map(lambda g: g.astype(jnp.float64), d.total), 0), d.finite


def exploded(norm, finite):
    return ~np.asarray(finite, bool) | ~(np.asarray(norm, float) <= EXPLODE)


def verdict(rnn_frac: list[float], lstm_frac: list[float]) -> str:
    """Explosion fractions per weight scale (matched): the rule in the module docstring."""
    if len(rnn_frac) != len(lstm_frac) or not rnn_frac:
        raise ValueError(f"need one fraction per scale for both cells, got {len(rnn_frac)} and {len(lstm_frac)}")
    pairs = [(r, m) for r, m in zip(rnn_frac, lstm_frac) if r > 0 or m > 0]
    if not pairs:
        return C.INCONCLUSIVE
    fewer = sum(m < r for r, m in pairs)
    more = sum(m > r for r, m in pairs)
    if fewer == 0:
        return C.NOT_SUPPORTED
    return C.SUPPORTED if more == 0 else C.NUANCED


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
        params, xs, r = make_batches(cell, jax.random.key(60 + i, impl="unsafe_rbg"), n_seeds, n_i, n_b, n_t, dtype)

        def one(p, x, r_, g, cell=cell):
            return grad_norm(cell, {**p, "W_h": p["W_h"] * g}, x, r_)

        n_, f_ = jax.jit(jax.vmap(jax.vmap(one, (None, None, None, 0)), (0, 0, 0, None)))(params, xs, r, g_arr)
        norm[name], finite[name] = np.asarray(n_, float), np.asarray(f_, bool)  # [seed, gain]
        C.progress(f"  C6 {name}: {n_seeds} seeds x {len(gains)} scales done")
    frac = {k: exploded(norm[k], finite[k]).mean(0) for k in CELLS}
    nonfinite = {k: int((~finite[k]).sum()) for k in CELLS}
    v = verdict(list(frac["rnn"]), list(frac["lstm"]))
    headline = (
        f"fraction with ‖g‖ > {EXPLODE:g} or non-finite at g = {', '.join(f'{g:g}' for g in gains)}: "
        + "; ".join(f"{k} {', '.join(f'{x:.2f}' for x in frac[k])}" for k in CELLS)
        + f" ({n_seeds} seeds)"
        + ("; no explosion anywhere in this grid, too small to decide" if v == C.INCONCLUSIVE else "")
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
        + ". At-initialisation half of C6; clipping is c6_clipping.\n\n"
        "| g | " + " | ".join(f"{k}: fraction exploded (median ‖g‖)" for k in CELLS) + " |\n|---|---|---|---|\n" + rows
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c6_explosion.png")
    fig = _figure(gains, norm, finite, frac, n_seeds)
    C.write_outputs(
        args,
        NAME,
        config={"T": n_t, "H": n_h, "B": n_b, "I": n_i, "gains": gains, "threshold": EXPLODE},
        data={"fraction": frac, "nonfinite": nonfinite, "log10_norm_median": med},
        outcome=outcome,
        summary=summary,
        figures={"c6_explosion.png": fig},
        seeds=n_seeds,
    )
    return outcome


def wilson(p, n, z=1.0):
    """Wilson score interval (±1 sigma) for a fraction p of n."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _figure(gains, norm, finite, frac, n_seeds):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    g = np.asarray(gains)
    for j, k in enumerate(CELLS):
        lo, hi = wilson(frac[k], n_seeds)
        axes[0].errorbar(g, frac[k], yerr=[frac[k] - lo, hi - frac[k]], marker="o", capsize=3, label=k, color=f"C{j}")
        y = np.log10(np.where(finite[k], norm[k], np.nan))
        y = np.where(np.isfinite(y), y, np.nanmax(np.where(np.isfinite(y), y, -np.inf)) + 1)
        axes[1].plot(g, np.median(y, 0), marker="o", color=f"C{j}", label=k)
        axes[1].fill_between(g, np.percentile(y, 10, 0), np.percentile(y, 90, 0), color=f"C{j}", alpha=0.2)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xticks(g, [f"{x:g}" for x in g])
    axes[0].set_xlabel("recurrent weight scale g (W_h ~ N(0, g²/H))")
    axes[0].set_ylabel(f"fraction of networks with ‖g‖ > {EXPLODE:g}")
    axes[0].legend()
    axes[1].axhline(np.log10(EXPLODE), color="k", ls=":", lw=0.8, label="threshold")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xticks(g, [f"{x:g}" for x in g])
    axes[1].set_xlabel("recurrent weight scale g")
    axes[1].set_ylabel("log10 ‖dL/dθ‖ (median, 10–90 %)")
    axes[1].legend()
    onset = {k: next((f"{x:g}" for x, f in zip(gains, frac[k]) if f >= 0.5), f"> {gains[-1]:g}") for k in CELLS}
    fewer = sum(m < r for r, m in zip(frac["rnn"], frac["lstm"]))
    more = sum(m > r for r, m in zip(frac["rnn"], frac["lstm"]))
    fig.suptitle(
        f"C6 (at init, {n_seeds} seeds): explosion onset (≥ 50 %) at g = "
        + ", ".join(f"{onset[k]} ({k})" for k in CELLS)
        + f"; LSTM fraction below the RNN's at {fewer} scales, above at {more}"
    )
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
