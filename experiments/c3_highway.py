"""C3: the LSTM cell-state path is elementwise (diag f); the other paths behave like an RNN.

Setting: LSTM at initialisation, W_h = g × orthogonal blocks for g in a sweep (so
ρ(W_h) = g), forget bias 1, W_x ~ N(0, 1/I), inputs N(0, 1), loss r·h_{T-1}.
Measured per seed and g:

1. the highway Jacobian from ``gp.edge_jacobians`` against diag(f_t), with f_t from
   ``cell.gate_values`` (max |error| relative to max f, over the first T_J steps), and
   that it reads no h_{t-1};
2. the 0-hop adjoint: for s < T-1, λ_s^{[0]}.c = (Π_{t=s+1}^{T-2} f_t) ⊙ λ_{T-2}^{[0]}.c, so
   log ‖λ_s^{[0]}.c‖ follows Σ log f_t; the max |Δ log-norm| between the two over s;
3. per-step rates: the top Lyapunov exponent of the product of the highway Jacobians
   alone, of the hop (gates) Jacobians alone (a path that hops at every step) and of
   the full Jacobian, and their least-squares slope against ln g across the sweep
   (a pure matrix product W_h^d has slope 1).

Criterion (CLAIMS.md), thresholds fixed before the default run:
(i) highway Jacobian error ≤ 10 eps; (ii) 0-hop log-norm error ≤ 10 T eps;
(iii) hop-rate slope against ln g ≥ 0.5 and highway-rate |slope| ≤ 0.1.
SUPPORTED if all hold; NUANCED if (i), (ii) and the hop half of (iii) hold but the
highway rate also moves with g; NOT SUPPORTED otherwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import gradpaths as gp
from experiments import _common as C
from experiments.c2_vanishing import band, make_batches, readout_loss

CLAIM, NAME = "C3", "c3_highway"
TITLE = "C3: the LSTM highway Jacobian is diag(f); the hop paths scale with W_h"
GAINS = (0.25, 0.5, 1.0, 2.0, 4.0)
HOP_SLOPE, HWY_SLOPE = 0.5, 0.1
EDGE_SETS = {"highway": ("highway",), "hops": ("gates",), "full": None}


def forget_gates(cell, params, xs):
    """f_t [B, T, H] recomputed from the gate pre-activations (independent of spectra)."""
    hs = gp.unroll(cell, params, xs)
    h_prev = jnp.concatenate([jnp.zeros_like(hs[:, :1]), hs[:, :-1]], axis=1)
    return cell.gate_values(xs @ params["W_x"] + params["b"], h_prev @ params["W_h"])[1]


def analyse(cell, params, xs, r, n_tj, burn_in):
    """The three measurements for one network and batch xs [B, T, I]."""
    n_h, n_t = cell.hidden_size, xs.shape[-2]
    f = forget_gates(cell, params, xs)
    jac = gp.edge_jacobians(cell, params, xs[0, :n_tj])["highway"]  # [T_J, S, S], state [h; c]
    jac_err = jnp.max(jnp.abs(jac[:, n_h:, n_h:] - jax.vmap(jnp.diag)(f[0, :n_tj]))) / jnp.max(f[0, :n_tj])
    reads_h = jnp.max(jnp.abs(jac[:, :, :n_h]))

    w = jnp.zeros(n_t, xs.dtype).at[-1].set(1)
    d = gp.decompose(cell, params, xs, lambda hs: readout_loss(hs, r, w), max_hops=1, parts=("state",))
    # norms and the prediction in float64: Σ λ² of a float32 λ underflows long before λ does
    lam0 = d.state_grads.c[:, 0].astype(jnp.float64)  # [T, B, H]: the 0-hop class
    lam1 = d.state_grads.c[:, 1].astype(jnp.float64)  # the ≥ 1-hop classes
    # Π_{t=s+1}^{T-2} f_t for s = 0..T-2 (empty product at s = T-2)
    log_f = jnp.log(jnp.swapaxes(f, 0, 1).astype(jnp.float64))  # [T, B, H]
    suffix = jnp.cumsum(log_f[1 : n_t - 1][::-1], 0)[::-1]
    log_prod = jnp.concatenate([suffix, jnp.zeros_like(log_f[:1])])  # [T-1, B, H]
    pred = jnp.exp(log_prod) * lam0[n_t - 2]
    norm_bt = lambda v: jnp.linalg.norm(v, axis=-1)  # [T, B]
    meas_n, pred_n = norm_bt(lam0[: n_t - 1]), norm_bt(pred)
    fl = float(jnp.finfo(xs.dtype).tiny) * 1e6  # below: float underflow of λ's entries, not compared
    ok = (meas_n > fl) & (pred_n > fl)
    log_err = jnp.max(jnp.where(ok, jnp.abs(jnp.log(jnp.where(ok, meas_n, 1)) - jnp.log(jnp.where(ok, pred_n, 1))), 0))

    rates = {
        name: gp.lyapunov_exponents(cell, params, xs, 1, edges=edges, burn_in=burn_in)[..., 0].mean()
        for name, edges in EDGE_SETS.items()
    }
    return {
        "jac_err": jac_err,
        "reads_h": reads_h,
        "adjoint_log_err": log_err,
        "c0_norm": jnp.median(meas_n, 1),
        "c0_pred": jnp.median(pred_n, 1),
        "c1_norm": jnp.median(norm_bt(lam1), 1),
        **{f"rate_{k}": v for k, v in rates.items()},
    }


def slope(x, y) -> float:
    """Least-squares slope of y against x."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(np.polyfit(x, y, 1)[0])


def verdict(jac_err: float, adjoint_err: float, hop_slope: float, hwy_slope: float, eps: float, n_t: int) -> str:
    """The rule in the module docstring."""
    exact = jac_err <= 10 * eps and adjoint_err <= 10 * n_t * eps
    if not exact or not hop_slope >= HOP_SLOPE:
        return C.NOT_SUPPORTED
    return C.SUPPORTED if abs(hwy_slope) <= HWY_SLOPE else C.NUANCED


def run(args: C.Args) -> C.Outcome:
    n_t, n_h, n_b = args.pick((40, 8, 2), (200, 32, 4), (1000, 128, 16))
    n_seeds = args.n_seeds(2, 6, 32)
    n_i, n_tj, dtype = 4, min(n_t, 50), args.dtype
    eps = float(jnp.finfo(dtype).eps)
    cell = gp.lstm(n_h)
    params, xs, r = make_batches(cell, jax.random.key(3, impl="unsafe_rbg"), n_seeds, n_i, n_b, n_t, dtype)

    def one(p, x, r_, gain):
        return analyse(cell, {**p, "W_h": p["W_h"] * gain}, x, r_, n_tj, burn_in=n_t // 8)

    C.progress(f"  C3: {n_seeds} seeds x {len(GAINS)} scales, T={n_t}, H={n_h}, B={n_b}")
    gains = jnp.asarray(GAINS, dtype)
    out = jax.jit(jax.vmap(jax.vmap(one, (None, None, None, 0)), (0, 0, 0, None)))(params, xs, r, gains)
    out = jax.tree.map(lambda v: np.asarray(v, float), out)  # [seed, gain, ...]
    med = {k: np.median(out[f"rate_{k}"], 0) for k in EDGE_SETS}
    slopes = {k: slope(np.log(GAINS), med[k]) for k in EDGE_SETS}
    jac_err, adj_err = float(out["jac_err"].max()), float(out["adjoint_log_err"].max())
    reads_h = float(out["reads_h"].max())
    v = verdict(jac_err, adj_err, slopes["hops"], slopes["highway"], eps, n_t)
    headline = (
        f"highway Jacobian = diag(f) to {C.fmt(jac_err)} (eps {eps:.1e}); 0-hop log-norm = Σ log f to "
        f"{C.fmt(adj_err)}; slope of rate vs ln g: hop paths {C.fmt(slopes['hops'])}, highway "
        f"{C.fmt(slopes['highway'])}, full {C.fmt(slopes['full'])}"
    )
    rows = "\n".join(
        f"| {g} | {C.fmt(med['highway'][j])} | {C.fmt(med['hops'][j])} | {C.fmt(med['full'][j])} | {C.fmt(np.log(g))} |"
        for j, g in enumerate(GAINS)
    )
    summary = (
        f"LSTM H={n_h}, T={n_t}, batch {n_b}, {n_seeds} seeds (medians), forget bias 1, W_h = g × orthogonal, "
        f"{jnp.dtype(dtype).name}.\n\n"
        f"- highway Jacobian c→c block vs diag(f_t): max relative error {jac_err:.2e} (criterion ≤ {10 * eps:.1e}); "
        f"its h_{{t-1}} columns: max |entry| {reads_h:.1e}.\n"
        f"- 0-hop adjoint ‖λ_s^[0].c‖ vs ‖(Π f) ⊙ λ_{{T-2}}^[0].c‖: max |Δ log| {adj_err:.2e} "
        f"(criterion ≤ {10 * n_t * eps:.1e}).\n"
        f"- slopes of the per-step rate against ln g: hop paths {slopes['hops']:.3f} (criterion ≥ {HOP_SLOPE}), "
        f"highway {slopes['highway']:.3f} (criterion |·| ≤ {HWY_SLOPE}), full Jacobian {slopes['full']:.3f}.\n\n"
        "| g | highway rate | hop-path rate | full rate | ln g (pure W_h product) |\n|---|---|---|---|---|\n"
        + rows
        + "\n\nRates are top Lyapunov exponents (nats per step) of the products of each edge's Jacobians along "
        "the trajectory."
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c3_highway.png")
    fig = _figure(out, slopes, n_t, adj_err <= 10 * n_t * eps)
    C.write_outputs(
        args,
        NAME,
        config={"T": n_t, "H": n_h, "B": n_b, "I": n_i, "T_J": n_tj, "gains": GAINS, "forget_bias": 1.0},
        data={
            "jacobian_err": jac_err,
            "jacobian_reads_h": reads_h,
            "adjoint_log_err": adj_err,
            "rates": {k: out[f"rate_{k}"] for k in EDGE_SETS},
            "slopes": slopes,
        },
        outcome=outcome,
        summary=summary,
        figures={"c3_highway.png": fig},
        seeds=n_seeds,
    )
    return outcome


def _figure(out, slopes, n_t, adjoint_exact):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    g = np.asarray(GAINS)
    for j, (k, lab) in enumerate(
        (("highway", "highway (c→c, diag f)"), ("hops", "hop edge (h→gates)"), ("full", "full Jacobian"))
    ):
        y = out[f"rate_{k}"]
        axes[0].plot(g, np.median(y, 0), marker="o", color=f"C{j}", label=f"{lab}: slope {slopes[k]:.2f}")
        axes[0].fill_between(g, np.percentile(y, 25, 0), np.percentile(y, 75, 0), color=f"C{j}", alpha=0.2)
    axes[0].plot(g, np.log(g), color="k", ls=":", label="ln g (a pure W_h product)")
    axes[0].set_xscale("log", base=2)
    axes[0].set_xticks(g, [f"{x:g}" for x in g])
    axes[0].set_xlabel("recurrent weight scale g = ρ(W_h)")
    axes[0].set_ylabel("per-step rate (top Lyapunov exponent, nats/step)")
    axes[0].legend(fontsize=8)
    s = np.arange(n_t)
    for j, gain in enumerate(GAINS):
        if gain not in (GAINS[0], 1.0, GAINS[-1]):
            continue
        col = {0: "C4", 2: "C3", 4: "C7"}[j]
        band(axes[1], s[: n_t - 1], out["c0_norm"][:, j], col, f"0 hops, g={gain:g}")
        axes[1].plot(s[: n_t - 1], np.median(out["c0_pred"][:, j], 0), color="k", ls=":", lw=0.8)
        band(axes[1], s, out["c1_norm"][:, j], col, f"≥1 hops, g={gain:g}", lw=0.8)
        axes[1].lines[-1].set_linestyle("--")
    axes[1].plot([], [], color="k", ls=":", lw=0.8, label="‖(Π f) ⊙ λ_{T-2}‖ (prediction)")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("time step s (loss at s = T-1)")
    axes[1].set_ylabel("‖∂L/∂c_s‖ by hop class (median)")
    axes[1].legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.suptitle(
        f"C3: highway rate slope vs ln g = {slopes['highway']:.2f}, hop-path slope = {slopes['hops']:.2f}; "
        + (
            "the 0-hop adjoint follows Σ log f to float rounding"
            if adjoint_exact
            else "the 0-hop adjoint departs from Σ log f"
        )
    )
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
