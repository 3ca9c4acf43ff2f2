"""C5: does one non-vanishing path (the highway) keep the long-range LSTM gradient alive?

Setting (``_probe.lstm_bias_sweep``): LSTM at initialisation, forget-gate bias b_f ∈
{-2, 0, 1, 2, 3, 5} and chrono (b_f ~ log U[1, T-1], b_i = -b_f), the same weights for
every bias, loss r·h_{T-1}. The exact joint table G_{d,k} (distance d, hop class k; the
last class collects ≥ K hops) is ``gp.decompose(..., parts=("step_hops",))`` read backwards
(for a last-step loss d = T-1-t); its sum is checked against jax.grad on every run.

At long range (d ≥ D_LONG), per bias and seed: the size ‖G_long‖/‖g‖, each class's
projection share ⟨G^{[k]}, G_long⟩/‖G_long‖² (they sum to 1; negative = opposing), the
cosine of the highway class against the k ≥ 1 paths, the cancellation ratio
‖Σ_k G^{[k]}‖/Σ_k‖G^{[k]}‖ and the mean hop count.

Rule (set before the default run), with 95 % bootstrap intervals over seeds of medians:
- NOT SUPPORTED if the decomposition is not exact (rel. error > 1e-12 in float64);
- a bias keeps a long-range gradient if the interval of its size lies above SURVIVE;
- at each surviving bias the highway carries it if the interval of its projection share
  lies above 0.5, does not if it lies below, undecided otherwise;
- SUPPORTED if the highway carries it at every surviving bias, NOT SUPPORTED if at none
  (or nothing survives), NUANCED if at some and not at others, INCONCLUSIVE if undecided.
"""

from __future__ import annotations

import numpy as np

from experiments import _common as C
from experiments import _probe as P
from experiments import _stats as S
from gradpaths.plots import hop_labels

CLAIM, NAME = "C5", "c5_paths"
TITLE = "C5: which paths carry the surviving long-range LSTM gradient"
SURVIVE, HIGHWAY_SHARE, TOL = 1e-3, 0.5, 1e-12


def verdict(max_err: float, sizes: list[S.Estimate], shares: list[S.Estimate]) -> S.Decision:
    """The rule in the module docstring; one size and one highway share (with intervals) per bias."""
    if len(sizes) != len(shares) or not sizes:
        raise ValueError(f"need one size and one highway share per bias, got {len(sizes)} and {len(shares)}")
    if not max_err <= TOL:
        return S.Decision(C.NOT_SUPPORTED, max_err, (max_err, max_err), 1, f"not exact: rel. error {max_err:.2g}")
    kept = [h for s, h in zip(sizes, shares) if s.lo > SURVIVE]
    if not kept:
        worst = max(sizes, key=lambda s: s.value)
        return S.Decision(C.NOT_SUPPORTED, worst.value, (worst.lo, worst.hi), worst.n, "no bias keeps it")
    parts = [S.decide(h, null=HIGHWAY_SHARE, what="highway share") for h in kept]
    low = min(kept, key=lambda h: h.value)
    v = P.cases([p.verdict for p in parts])
    need = max((p.n_needed or 0) for p in parts) or None
    reason = f"{sum(p.verdict == C.SUPPORTED for p in parts)} of {len(parts)} surviving biases carried by the highway"
    return S.Decision(v, low.value, (low.lo, low.hi), low.n, reason, need)


def run(args: C.Args) -> C.Outcome:
    sz, res = P.lstm_bias_sweep(args)
    long = {s: res[s]["long"] for s in P.SETTINGS}
    size = {s: P.ci(long[s]["size"]) for s in P.SETTINGS}
    share = {s: P.ci(long[s]["proj_share"][:, 0]) for s in P.SETTINGS}
    med = {s: {k: np.median(v, 0) for k, v in long[s].items()} for s in P.SETTINGS}
    max_err = max(float(np.max(res[s]["exact_err"])) for s in P.SETTINGS)
    dec = verdict(max_err, [size[s] for s in P.SETTINGS], [share[s] for s in P.SETTINGS])
    labels = hop_labels(sz["max_hops"] + 1)
    dom = {s: labels[int(np.argmax(med[s]["norm_share"]))] if size[s].value > 0 else "—" for s in P.SETTINGS}
    headline = (
        f"exact (rel. err {C.fmt(max_err)}); at d≥{sz['d_long']}, highway share (median [95% CI], n={sz['seeds']}): "
        + "; ".join(f"{s} {P.brief(share[s])}" for s in P.SETTINGS if size[s].lo > SURVIVE)
        + f" — {dec.reason}"
        + (f"; about {dec.n_needed} seeds would decide" if dec.verdict == C.INCONCLUSIVE and dec.n_needed else "")
    )
    rows = "\n".join(
        f"| {s} | {size[s].text()} | {share[s].text()} | {C.fmt(med[s]['cos_highway_rest'])} | "
        f"{C.fmt(med[s]['cancellation'])} | {C.fmt(med[s]['mean_hops'])} | {dom[s]} |"
        for s in P.SETTINGS
    )
    summary = (
        f"LSTM H={sz['H']}, T={sz['T']}, batch {sz['B']}, {sz['seeds']} seeds, max_hops={sz['max_hops']}, float64; "
        f"loss r·h_{{T-1}}; long range d ≥ {sz['d_long']}. Σ_{{d,k}} G = jax.grad to {C.fmt(max_err)} (≤ {TOL:g}). "
        f"Survives: the 95% interval of ‖G_long‖/‖g‖ above {SURVIVE:g}; the highway carries it: the interval of "
        f"its projection share above {HIGHWAY_SHARE}. {dec.text()}\n\n"
        "| setting | ‖G_long‖/‖g‖ median [95% CI] | highway projection share [95% CI] | cos(highway, k≥1) "
        "| cancellation ‖ΣG_k‖/Σ‖G_k‖ | mean hops | largest class |\n|---|---|---|---|---|---|---|\n"
        + rows
        + "\n\nProjection shares sum to 1 over the classes; a cancellation ratio near 1 means the classes add up."
    )
    outcome = C.Outcome(CLAIM, NAME, dec.verdict, headline, "c5_paths.png")
    fig = _figure(long, size, share, sz)
    config = sz
    data = {"max_rel_err": max_err, "size": size, "highway_share": share, "long_range": med, "decision": dec}
    return P.save(args, NAME, outcome, summary, fig, config, data, sz["seeds"])


def _figure(long, size, share, sz):
    import matplotlib.pyplot as plt

    k1 = sz["max_hops"] + 1
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.3, 1, 1]})
    x = np.arange(len(P.SETTINGS))
    shares = np.array([np.mean(long[s]["proj_share"], 0) for s in P.SETTINGS])  # means: each bar sums to 1
    cmap = plt.get_cmap("viridis")
    up, down = np.zeros(len(x)), np.zeros(len(x))
    for k in range(k1):
        pos, neg = np.maximum(shares[:, k], 0), np.minimum(shares[:, k], 0)
        col = "C3" if k == 0 else cmap((k - 1) / max(k1 - 2, 1))
        axes[0].bar(x, pos, bottom=up, color=col, label="0 hops (highway)" if k == 0 else None)
        axes[0].bar(x, neg, bottom=down, color=col)
        up, down = up + pos, down + neg
    fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(1, k1 - 1)), ax=axes[0], label="hop class k")
    est = np.array([[share[s].value, share[s].lo, share[s].hi] for s in P.SETTINGS])
    axes[0].errorbar(x, est[:, 0], yerr=[est[:, 0] - est[:, 1], est[:, 2] - est[:, 0]], fmt="k.", capsize=3)
    axes[0].axhline(HIGHWAY_SHARE, color="k", ls=":", lw=0.8)
    axes[0].set_xticks(x, P.SETTINGS, fontsize=8)
    axes[0].set_ylabel(f"projection share of G(d ≥ {sz['d_long']})\n(bars: mean; dots: median, 95% CI)")
    axes[0].legend(fontsize=7, loc="lower left")
    axes[1].boxplot([np.maximum(long[s]["size"], 1e-300) for s in P.SETTINGS], positions=x, widths=0.5)
    axes[1].set_yscale("log")
    axes[1].axhline(SURVIVE, color="k", ls=":", lw=0.8, label=f"survives (≥ {SURVIVE:g})")
    axes[1].set_xticks(x, P.SETTINGS, fontsize=8)
    axes[1].set_ylabel(f"‖G(d ≥ {sz['d_long']})‖ / ‖g‖ (seeds)")
    axes[1].legend(fontsize=7)
    for j, s in enumerate(P.SETTINGS):
        P.band(axes[2], np.arange(k1), long[s]["norm_share"], f"C{j}", s)
    axes[2].set_yscale("log")
    axes[2].set_ylim(1e-8, 3)
    axes[2].set_xlabel(f"hop class k (last: ≥{k1 - 1})")
    axes[2].set_ylabel("‖G^[k](d ≥ d_long)‖ / ‖G(d ≥ d_long)‖")
    axes[2].legend(fontsize=7, ncol=2)
    surv = [s for s in P.SETTINGS if size[s].lo > SURVIVE]
    carried = [s for s in surv if share[s].lo > HIGHWAY_SHARE]
    fig.suptitle(
        f"C5: the long-range gradient survives at {', '.join(surv) or 'no bias'}; the highway carries it "
        f"(95% CI above {HIGHWAY_SHARE}) at {', '.join(carried) or 'none of them'}"
    )
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
