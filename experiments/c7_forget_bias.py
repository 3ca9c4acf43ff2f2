"""C7 at initialisation: the long-range LSTM gradient against the forget-gate bias.

The setting of ``_probe.lstm_bias_sweep`` (shared with c5_paths and distance_hops_map): an
LSTM at initialisation with b_f ∈ {-2, 0, 1, 2, 3, 5} and chrono, the same weights for
every bias, loss r·h_{T-1}. Measured per bias and seed: ‖G_{d=100}‖, the gradient through
θ's use 100 steps before the loss (d = 20 at --quick), from ``by_step`` (O(T), so many
seeds: SEEDS), and, from the shared sweep, its highway (0-hop) projection share.

Rule (the at-initialisation half of CLAIMS.md C7), paired over seeds (same weights):
each step b → b' of the sweep rises if the 95 % bootstrap interval of the mean
log(‖G_d‖(b') / ‖G_d‖(b)) lies above 0, falls if below, undecided otherwise.
SUPPORTED if every step rises; NUANCED if some step falls but b_f = 5 is above b_f = -2;
NOT SUPPORTED if b_f = 5 is not above -2; INCONCLUSIVE if a step is undecided and none
falls. Chrono is reported beside the sweep. Training is c7_forget_training and c7_selective.
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

CLAIM, NAME = "C7", "c7_forget_bias"
TITLE = "C7 at initialisation: long-range gradient against forget bias"
SEEDS = 32


def verdict(g_SB) -> tuple[S.Decision, list[S.Decision]]:
    """g_SB [seed, bias]: ‖G_d‖ per seed, biases in increasing order. Returns (verdict, one decision per step)."""
    g = np.log(np.maximum(np.asarray(g_SB, float), 1e-300))
    if g.ndim != 2 or g.shape[1] < 2:
        raise ValueError(f"verdict needs [seeds, biases] with two or more biases, got shape {g.shape}")
    diff = lambda a, b: S.bootstrap_diff(g[:, b], g[:, a], stat="mean", paired=True)
    steps = [S.decide(diff(j, j + 1), what="log-ratio of adjacent biases") for j in range(g.shape[1] - 1)]
    ends = S.decide(diff(0, g.shape[1] - 1), what="log-ratio of the last to the first bias")
    vs = [d.verdict for d in steps]
    if ends.verdict == C.NOT_SUPPORTED or (ends.verdict == C.INCONCLUSIVE and C.NOT_SUPPORTED in vs):
        v = C.NOT_SUPPORTED if ends.verdict == C.NOT_SUPPORTED else C.INCONCLUSIVE
    elif all(x == C.SUPPORTED for x in vs):
        v = C.SUPPORTED
    else:
        v = C.NUANCED if C.NOT_SUPPORTED in vs and ends.verdict == C.SUPPORTED else C.INCONCLUSIVE
    weakest = min(steps, key=lambda d: d.interval[0])
    need = max((d.n_needed or 0) for d in steps) or None
    reason = f"{vs.count(C.SUPPORTED)} of {len(vs)} steps rise, {vs.count(C.NOT_SUPPORTED)} fall"
    return S.Decision(v, weakest.estimate, weakest.interval, weakest.n, reason, need), steps


def at_distance(sz: dict, n_seeds: int) -> dict[str, np.ndarray]:
    """{setting: ‖G_d‖ [seed]} at d = d_at for the loss r·h_{T-1}, from ``by_step``."""
    cell, data, biases = P.bias_setup(sz, n_seeds)
    t = sz["T"] - 1 - sz["d_at"]

    def one(p, x, r, b):
        loss = lambda hs: A.readout_loss(hs, r, A.last_step(x.shape[-2], x.dtype))
        by_step = gp.decompose(cell, {**p, "b": b}, x, loss, parts=("step",)).by_step
        return jnp.linalg.norm(A.flat_lead(by_step)[t])

    f = jax.jit(jax.vmap(one))
    return {s: np.asarray(f(*data, biases[s])) for s in P.SETTINGS}


def run(args: C.Args) -> C.Outcome:
    sz, res = P.lstm_bias_sweep(args)
    n_seeds = args.n_seeds(8, SEEDS, 64)
    g_at = at_distance(sz, n_seeds)
    sweep = P.SETTINGS[: len(P.BIASES)]
    dec, steps = verdict(np.stack([g_at[s] for s in sweep], 1))
    norm = {s: P.ci(g_at[s]) for s in P.SETTINGS}
    share = {s: P.ci(res[s]["at"]["proj_share"][:, 0]) for s in P.SETTINGS}
    d = sz["d_at"]
    headline = (
        f"median ‖G_d={d}‖ over b_f {', '.join(f'{b:g}' for b in P.BIASES)}: "
        + ", ".join(C.fmt(norm[s].value) for s in sweep)
        + f" (chrono {C.fmt(norm['chrono'].value)}, n={n_seeds}); {dec.reason}; weakest step log-ratio "
        + f"{C.fmt(dec.estimate)} [95% CI {C.fmt(dec.interval[0])}, {C.fmt(dec.interval[1])}]"
    )
    step_rows = "\n".join(f"| {a} → {b} | {P.brief(x)} | {x.verdict} |" for a, b, x in zip(sweep, sweep[1:], steps))
    summary = (
        f"LSTM H={sz['H']}, T={sz['T']}, batch {sz['B']}, {n_seeds} seeds (highway shares: {sz['seeds']}), float64, "
        "loss r·h_{T-1}, distance "
        f"d = {d}. {dec.text()}\n\n| setting | ‖G_d={d}‖ median [95% CI] | highway projection share [95% CI] |\n"
        "|---|---|---|\n"
        + "\n".join(f"| {s} | {norm[s].text()} | {share[s].text()} |" for s in P.SETTINGS)
        + "\n\n| step | mean log-ratio [95% CI] (paired) | rises |\n|---|---|---|\n"
        + step_rows
    )
    outcome = C.Outcome(CLAIM, NAME, dec.verdict, headline, "c7_forget_bias.png")
    fig = _figure(res, norm, share, sz, dec)
    config = sz
    data = {"norm": norm, "highway_share": share, "steps": steps, "decision": dec}
    return P.save(args, NAME, outcome, summary, fig, config, data, sz["seeds"])


def _figure(res, norm, share, sz, dec):
    import matplotlib.pyplot as plt

    d, x = sz["d_at"], np.arange(len(P.SETTINGS))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    for ax, est, lab in ((axes[0], norm, f"‖G_d={d}‖"), (axes[1], share, f"highway (0-hop) share of G_d={d}")):
        e = np.array([[est[s].value, est[s].lo, est[s].hi] for s in P.SETTINGS])
        ax.errorbar(x, e[:, 0], yerr=[e[:, 0] - e[:, 1], e[:, 2] - e[:, 0]], fmt="o-", capsize=3, label=lab)
        ax.set_xticks(x, P.SETTINGS, fontsize=8)
        ax.set_ylabel(f"{lab}\n(median, 95% CI over seeds)")
    axes[0].set_yscale("log")
    axes[1].axhline(0.5, color="k", ls=":", lw=0.8)
    axes[0].set_xlabel("forget-gate bias at initialisation")
    fig.suptitle(f"C7 (at init): the gradient at d={d} against b_f — {dec.verdict}: {dec.reason}")
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
