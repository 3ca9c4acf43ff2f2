"""C9 (decay half): the per-step decay rate of long-range RNN gradients, by activation.

Setting: an Elman RNN with each activation (sigmoid, tanh, relu, linear) on the same
draws (W_h ~ N(0, g²/H), W_x ~ N(0, 1/I), inputs N(0, 1), readout r) for each seed and
scale g, plus the IRNN (relu, W_h = I; Le et al. 2015). Loss r·h_{T-1}; G_d is the
gradient through θ's use at distance d (``by_step``). The decay rate is the
least-squares slope of log ‖G_d‖ over d ∈ [5, 100] (values in float underflow or exactly
zero are left out), median over seeds.

Criterion (CLAIMS.md, the decay half): the ordering of decay rates
sigmoid < tanh < relu (more negative = faster decay) holds at matched initialisations.
SUPPORTED if it holds at every g, NUANCED if at some, NOT SUPPORTED if at none. The
other half (the IRNN trains where the tanh RNN fails) is c9_irnn.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import gradpaths as gp
from experiments import _common as C
from experiments.c2_vanishing import FIT_D, band, floor, make_batches, readout_loss
from gradpaths.plots import norms

CLAIM, NAME = "C9", "c9_activations"
TITLE = "C9: per-step decay rate of long-range RNN gradients by activation"
ACTIVATIONS = ("sigmoid", "tanh", "relu", "linear")
ORDER = ("sigmoid", "tanh", "relu")
GAINS = (0.5, 1.0, 1.5)


def profile(cell, params, xs, r):
    """‖G_d‖ [T] for the loss r·h_{T-1} (d = 0..T-1), and whether it is finite."""
    w = jnp.zeros(xs.shape[-2], xs.dtype).at[-1].set(1)
    d = gp.decompose(cell, params, xs, lambda hs: readout_loss(hs, r, w), parts=("step",))
    return norms(jax.tree.map(lambda g: g[::-1].astype(jnp.float64), d.by_step), 1), d.finite


def ordered(rates: dict[str, float]) -> bool:
    """Whether rate[sigmoid] < rate[tanh] < rate[relu]."""
    r = [rates[a] for a in ORDER]
    return bool(np.all(np.isfinite(r)) and np.all(np.diff(r) > 0))


def verdict(rates_per_gain: list[dict[str, float]]) -> str:
    """rates_per_gain: {activation: median decay rate} for each g."""
    if not rates_per_gain:
        raise ValueError("verdict needs decay rates for at least one recurrent scale")
    ok = [ordered(r) for r in rates_per_gain]
    return C.all_some_none(ok)


def run(args: C.Args) -> C.Outcome:
    n_t, n_h, n_b = args.pick((60, 16, 2), (200, 64, 4), (1000, 128, 16))
    n_seeds = args.n_seeds(3, 8, 64)
    n_i, dtype = 4, args.dtype
    key = jax.random.key(9, impl="unsafe_rbg")
    params, xs, r = make_batches(gp.rnn(n_h), key, n_seeds, n_i, n_b, n_t, dtype)
    cells = {a: gp.rnn(n_h, activation=a) for a in ACTIVATIONS}
    g_arr = jnp.asarray(GAINS, dtype)
    g_d, finite = {}, {}
    for name, cell in cells.items():

        def one(p, x, r_, g, cell=cell):
            return profile(cell, {**p, "W_h": p["W_h"] * g}, x, r_)

        out = jax.jit(jax.vmap(jax.vmap(one, (None, None, None, 0)), (0, 0, 0, None)))(params, xs, r, g_arr)
        g_d[name], finite[name] = np.asarray(out[0]), np.asarray(out[1])  # [seed, gain, T]
    irnn = gp.irnn(n_h)
    eye = {**params, "W_h": jnp.broadcast_to(jnp.eye(n_h, dtype=dtype), params["W_h"].shape)}
    out = jax.jit(jax.vmap(lambda p, x, r_: profile(irnn, p, x, r_)))(eye, xs, r)
    g_d["irnn"], finite["irnn"] = np.asarray(out[0])[:, None], np.asarray(out[1])[:, None]  # [seed, 1, T]
    C.progress(f"  C9: {len(g_d)} cells x {n_seeds} seeds done")
    fl = floor(dtype)
    rates = {k: np.asarray(gp.fit_decay_rate(v, d_min=FIT_D[0], d_max=FIT_D[1], floor=fl).rate) for k, v in g_d.items()}
    med = {k: np.median(v, 0) for k, v in rates.items()}  # [gain] (irnn: [1])
    per_gain = [{a: float(med[a][j]) for a in ACTIVATIONS} for j in range(len(GAINS))]
    v = verdict(per_gain)
    holds = [g for g, rr in zip(GAINS, per_gain) if ordered(rr)]
    headline = (
        "median decay rate (nats/step) "
        + "; ".join(
            f"g={g:g}: " + ", ".join(f"{a} {C.fmt(rr[a])}" for a in ACTIVATIONS) for g, rr in zip(GAINS, per_gain)
        )
        + f"; IRNN {C.fmt(float(med['irnn'][0]))}; sigmoid < tanh < relu holds at g ∈ "
        + "{"
        + (", ".join(f"{g:g}" for g in holds) or "none")
        + "}"
    )
    # paired across seeds (same draws): the fraction of seeds in which each step of the ordering holds
    paired = {pair: (rates[pair[0]] < rates[pair[1]]).mean(0) for pair in (("sigmoid", "tanh"), ("tanh", "relu"))}
    iqr = lambda a, j: np.percentile(rates[a][:, j], [25, 75])
    rows = "\n".join(
        f"| {g:g} | "
        + " | ".join(f"{C.fmt(rr[a])} [{C.fmt(iqr(a, j)[0])}, {C.fmt(iqr(a, j)[1])}]" for a in ACTIVATIONS)
        + f" | {'yes' if ordered(rr) else 'no'} | "
        + " | ".join(f"{paired[p][j]:.2f}" for p in paired)
        + " |"
        for j, (g, rr) in enumerate(zip(GAINS, per_gain))
    )
    nonfinite = {k: int((~v_).sum()) for k, v_ in finite.items()}
    summary = (
        f"RNN H={n_h}, T={n_t}, batch {n_b}, {n_seeds} seeds (medians), same W_h/W_x/inputs draw for every activation, "
        f"loss r·h_{{T-1}}, fit over d ∈ [{FIT_D[0]}, {FIT_D[1]}]. Decay half of C9; the IRNN training half is "
        f"c9_irnn. Cells: median [IQR] over seeds.\n\n| g | "
        + " | ".join(ACTIVATIONS)
        + " | sigmoid < tanh < relu | seeds with sigmoid < tanh | seeds with tanh < relu |\n"
        + "|---|---|---|---|---|---|---|---|\n"
        + rows
        + f"\n\nIRNN (relu, W_h = I): decay rate {C.fmt(float(med['irnn'][0]))} per step. Non-finite gradients: "
        + ", ".join(f"{k} {n}" for k, n in nonfinite.items())
        + "."
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c9_activations.png")
    fig = _figure(g_d, med, fl, n_t, holds)
    C.write_outputs(
        args,
        NAME,
        config={"T": n_t, "H": n_h, "B": n_b, "I": n_i, "gains": GAINS, "fit_d": FIT_D},
        data={
            "rates": rates,
            "median_rates": med,
            "nonfinite": nonfinite,
            "paired_fraction": {f"{a}<{b}": v_ for (a, b), v_ in paired.items()},
        },
        outcome=outcome,
        summary=summary,
        figures={"c9_activations.png": fig},
        seeds=n_seeds,
    )
    return outcome


def _figure(g_d, med, fl, n_t, holds):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    d = np.arange(n_t)
    j1 = GAINS.index(1.0)
    for i, k in enumerate((*ACTIVATIONS, "irnn")):
        y = g_d[k][:, 0 if k == "irnn" else j1]
        rate = med[k][0 if k == "irnn" else j1]
        band(axes[0], d, np.where(y > fl, y, np.nan), f"C{i}", f"{k if k != 'irnn' else 'IRNN'} (rate {C.fmt(rate)})")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("distance d (steps)")
    axes[0].set_ylabel("‖G_d‖ (median, 25–75 %)")
    axes[0].set_title("g = 1 (IRNN: W_h = I)", fontsize=9)
    axes[0].legend(fontsize=8)
    for i, k in enumerate(ACTIVATIONS):
        axes[1].plot(GAINS, med[k], marker="o", color=f"C{i}", label=k)
    axes[1].axhline(med["irnn"][0], color="C4", ls="--", label="IRNN")
    axes[1].axhline(0, color="k", lw=0.6)
    axes[1].set_xlabel("recurrent weight scale g (W_h ~ N(0, g²/H))")
    axes[1].set_ylabel("decay rate of ‖G_d‖ (nats/step)")
    axes[1].legend(fontsize=8)
    fig.suptitle(
        "C9: decay-rate ordering sigmoid < tanh < relu "
        + (f"holds at g ∈ {{{', '.join(f'{g:g}' for g in holds)}}}" if holds else "holds at no g")
        + f" of {{{', '.join(f'{g:g}' for g in GAINS)}}}"
    )
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
