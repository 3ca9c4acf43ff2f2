"""C3: the LSTM cell-state path is elementwise (diag f); the other paths behave like an RNN.

Setting: LSTM at initialisation, W_h = g × orthogonal blocks for g in a sweep (so
ρ(W_h) = g), forget bias 1, W_x ~ N(0, 1/I), inputs N(0, 1), loss r·h_{T-1}.
Measured per seed and g:

1. the highway Jacobian from ``gp.edge_jacobians`` against diag(f_t), with f_t from
   ``cell.gate_values`` (max |error| relative to max f, over the first T_J steps);
2. the 0-hop adjoint: λ_s^{[0]}.c = (Π_{t=s+1}^{T-2} f_t) ⊙ λ_{T-2}^{[0]}.c, so
   log ‖λ_s^{[0]}.c‖ follows Σ log f_t (``analysis.highway_log_prediction``); the max
   |Δ log-norm| between the two;
3. per-step rates: the top Lyapunov exponent of the products of the highway Jacobians
   alone, of the hop (gates) Jacobians alone and of the full Jacobian; per seed, the
   least-squares slope of each rate against ln g (a pure product W_h^d has slope 1).

Rule (set before the default run), slopes with 95 % bootstrap intervals over seeds:
- NOT SUPPORTED unless exact: highway Jacobian error ≤ 100 eps and 0-hop log error ≤ 10 T eps
  (f and the Jacobian come from two forward passes that XLA may fuse, and so round, differently:
  0 under the default codegen, 18 eps in float32 under the older fusion emitters ``--quick`` uses;
  a Jacobian that were not diag(f) would miss by O(f));
- the hop paths move with g if the interval of their slope lies above 0.5 (NOT
  SUPPORTED if below, INCONCLUSIVE if it straddles);
- the highway: SUPPORTED if the interval of its slope contains 0 (its change across g is
  within its own seed spread); otherwise q = highway slope / hop slope per seed:
  NUANCED if q's interval lies within ±0.1 (it moves, at most a tenth as fast as the hop
  paths), NOT SUPPORTED if it lies wholly beyond ±0.1, INCONCLUSIVE otherwise.
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

CLAIM, NAME = "C3", "c3_highway"
TITLE = "C3: the LSTM highway Jacobian is diag(f); the hop paths scale with W_h"
GAINS = (0.25, 0.5, 1.0, 2.0, 4.0)
HOP_SLOPE, Q_MAX, JAC_TOL = 0.5, 0.1, 100
EDGE_SETS = {"highway": ("highway",), "hops": ("gates",), "full": None}


def analyse(cell, params, xs, r, n_tj, burn_in):
    """The three measurements for one network and batch xs [B, T, I]."""
    n_h, n_t = cell.hidden_size, xs.shape[-2]
    hs = gp.unroll(cell, params, xs)
    h_prev = jnp.concatenate([jnp.zeros_like(hs[:, :1]), hs[:, :-1]], axis=1)
    f = cell.gate_values(xs @ params["W_x"] + params["b"], h_prev @ params["W_h"])[1]  # [B, T, H]
    jac = gp.edge_jacobians(cell, params, xs[0, :n_tj])["highway"]  # [T_J, S, S], state [h; c]
    jac_err = jnp.max(jnp.abs(jac[:, n_h:, n_h:] - jax.vmap(jnp.diag)(f[0, :n_tj]))) / jnp.max(f[0, :n_tj])
    loss = lambda hs_: A.readout_loss(hs_, r, A.last_step(n_t, xs.dtype))
    lam = gp.decompose(cell, params, xs, loss, max_hops=1, parts=("state",)).state_grads.c.astype(jnp.float64)
    pred = A.highway_log_prediction(jnp.log(jnp.swapaxes(f, 0, 1).astype(jnp.float64)), lam[n_t - 2, 0])
    meas_n, pred_n = jnp.linalg.norm(lam[: n_t - 1, 0], axis=-1), jnp.linalg.norm(pred, axis=-1)  # [T-1, B]
    rates = {
        k: gp.lyapunov_exponents(cell, params, xs, 1, edges=e, burn_in=burn_in)[..., 0].mean()
        for k, e in EDGE_SETS.items()
    }
    return {
        "jac_err": jac_err,
        "adjoint_log_err": A.max_log_gap(meas_n, pred_n, A.underflow_floor(xs.dtype)),
        "c0_norm": jnp.median(meas_n, 1),
        "c0_pred": jnp.median(pred_n, 1),
        "c1_norm": jnp.median(jnp.linalg.norm(lam[:, 1], axis=-1), 1),
        **{f"rate_{k}": v for k, v in rates.items()},
    }


def slopes(rates_SG) -> np.ndarray:
    """Per seed, the least-squares slope of the rate against ln g: [S, G] -> [S]."""
    return np.polyfit(np.log(GAINS), np.asarray(rates_SG, float).T, 1)[0]


def verdict(exact: bool, hop_slope: S.Estimate, hwy_slope: S.Estimate, q: S.Estimate) -> S.Decision:
    """The rule in the module docstring (slopes and q = highway/hop slope, each with its interval)."""
    if not exact:
        return S.Decision(C.NOT_SUPPORTED, np.nan, (np.nan, np.nan), hop_slope.n, "not exact")
    hop = S.decide(hop_slope, null=HOP_SLOPE, what="hop-path slope against ln g")
    if hop.verdict != C.SUPPORTED:
        return hop
    hwy = S.decide(hwy_slope, what="highway slope")
    if hwy.verdict == C.INCONCLUSIVE:
        return S.Decision(
            C.SUPPORTED, hwy.estimate, hwy.interval, hwy.n, "highway change across g within its seed spread"
        )
    inside, beyond = max(abs(q.lo), abs(q.hi)) <= Q_MAX, (q.lo > Q_MAX or q.hi < -Q_MAX)
    v = C.NUANCED if inside else (C.NOT_SUPPORTED if beyond else C.INCONCLUSIVE)
    why = f"the highway rate moves with g at {q.value:.3g} [{q.lo:.3g}, {q.hi:.3g}] × the hop paths' slope"
    need = S.seeds_needed(q.n, q.value, q.lo, q.hi, Q_MAX * np.sign(q.value)) if v == C.INCONCLUSIVE else None
    return S.Decision(v, q.value, (q.lo, q.hi), q.n, why, need)


def run(args: C.Args) -> C.Outcome:
    n_t, n_h, n_b = args.pick((40, 8, 2), (200, 32, 4), (1000, 128, 16))
    n_seeds, n_i, n_tj, dtype = args.n_seeds(3, 8, 32), 4, min(n_t, 50), args.dtype
    eps = float(jnp.finfo(dtype).eps)
    cell = gp.lstm(n_h)
    data = P.draws(cell, jax.random.key(3), n_seeds, n_i, n_b, n_t, dtype)
    C.progress(f"  C3: {n_seeds} seeds x {len(GAINS)} scales, T={n_t}, H={n_h}, B={n_b}")
    fn = lambda p, x, r, g: analyse(cell, {**p, "W_h": p["W_h"] * g}, x, r, n_tj, burn_in=n_t // 8)
    out = P.over_seeds_and(fn, data, jnp.asarray(GAINS, dtype))  # [seed, gain, ...]
    sl = {k: slopes(out[f"rate_{k}"]) for k in EDGE_SETS}
    est = {k: P.ci(v, "mean") for k, v in sl.items()}
    q = P.ci(sl["highway"] / sl["hops"], "mean")
    jac_err, adj_err = float(out["jac_err"].max()), float(out["adjoint_log_err"].max())
    dec = verdict(jac_err <= JAC_TOL * eps and adj_err <= 10 * n_t * eps, est["hops"], est["highway"], q)
    med = {k: np.median(out[f"rate_{k}"], 0) for k in EDGE_SETS}
    move = (med["highway"][-1] - med["highway"][0]) / abs(med["highway"][0])
    headline = (
        f"highway Jacobian = diag(f) to {C.fmt(jac_err)}, 0-hop log-norm = Σ log f to {C.fmt(adj_err)}; slope vs "
        f"ln g (mean, 95% CI, n={n_seeds}): hop paths {P.brief(est['hops'])}, highway {P.brief(est['highway'])}; "
        f"highway/hop {P.brief(q)}; the highway rate changes {move:+.0%} across g = {GAINS[0]}…{GAINS[-1]}"
    )
    rows = "\n".join(
        f"| {g} | {C.fmt(med['highway'][j])} | {C.fmt(med['hops'][j])} | {C.fmt(med['full'][j])} | {C.fmt(np.log(g))} |"
        for j, g in enumerate(GAINS)
    )
    summary = (
        f"LSTM H={n_h}, T={n_t}, batch {n_b}, {n_seeds} seeds, forget bias 1, W_h = g × orthogonal, "
        f"{jnp.dtype(dtype).name}. {dec.text()}\n\n"
        f"- highway Jacobian vs diag(f_t): max relative error {jac_err:.2e} (≤ {JAC_TOL * eps:.1e}).\n"
        f"- 0-hop adjoint vs (Π f) ⊙ λ_{{T-2}}: max |Δ log| {adj_err:.2e} (≤ {10 * n_t * eps:.1e}).\n"
        f"- slope of the rate against ln g (mean [95% CI]): hop paths {est['hops'].text()} (need > {HOP_SLOPE}), "
        f"highway {est['highway'].text()}, full {est['full'].text()}; highway/hop slope {q.text()} (NUANCED "
        f"within ±{Q_MAX}).\n\n| g | highway rate | hop-path rate | full rate | ln g |\n|---|---|---|---|---|\n"
        + rows
        + "\n\nRates (medians) are top Lyapunov exponents (nats/step) of the products of each edge's Jacobians."
    )
    outcome = C.Outcome(CLAIM, NAME, dec.verdict, headline, "c3_highway.png")
    fig = _figure(out, est, n_t, dec)
    config = {"T": n_t, "H": n_h, "B": n_b, "I": n_i, "T_J": n_tj, "gains": GAINS, "forget_bias": 1.0}
    data = {
        "jacobian_err": jac_err,
        "adjoint_log_err": adj_err,
        "slopes": est,
        "q": q,
        "decision": dec,
        "rates": {k: out[f"rate_{k}"] for k in EDGE_SETS},
    }
    return P.save(args, NAME, outcome, summary, fig, config, data, n_seeds)


def _figure(out, est, n_t, dec):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    g = np.asarray(GAINS)
    labels = {"highway": "highway (c→c, diag f)", "hops": "hop edge (h→gates)", "full": "full Jacobian"}
    for j, (k, lab) in enumerate(labels.items()):
        y = out[f"rate_{k}"]
        lab = f"{lab}: slope {est[k].value:.2f} [{est[k].lo:.2f}, {est[k].hi:.2f}]"
        axes[0].plot(g, np.median(y, 0), marker="o", color=f"C{j}", label=lab)
        axes[0].fill_between(g, np.percentile(y, 25, 0), np.percentile(y, 75, 0), color=f"C{j}", alpha=0.2)
    axes[0].plot(g, np.log(g), color="k", ls=":", label="ln g (a pure W_h product)")
    axes[0].set_xscale("log", base=2)
    axes[0].set_xticks(g, [f"{x:g}" for x in g])
    axes[0].set_xlabel("recurrent weight scale g = ρ(W_h)")
    axes[0].set_ylabel("per-step rate (top Lyapunov exponent, nats/step)")
    axes[0].legend(fontsize=7)
    s = np.arange(n_t)
    for j, col in ((0, "C4"), (2, "C3"), (len(GAINS) - 1, "C7")):
        P.band(axes[1], s[: n_t - 1], out["c0_norm"][:, j], col, f"0 hops, g={GAINS[j]:g}")
        axes[1].plot(s[: n_t - 1], np.median(out["c0_pred"][:, j], 0), color="k", ls=":", lw=0.8)
        P.band(axes[1], s, out["c1_norm"][:, j], col, f"≥1 hops, g={GAINS[j]:g}", lw=0.8, ls="--")
    axes[1].plot([], [], color="k", ls=":", lw=0.8, label="(Π f) ⊙ λ_{T-2} (prediction)")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("time step s (loss at s = T-1)")
    axes[1].set_ylabel("‖∂L/∂c_s‖ by hop class (median)")
    axes[1].legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.suptitle(f"C3: {dec.verdict} — {dec.reason}")
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
