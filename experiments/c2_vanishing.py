"""C2: the total tanh-RNN gradient does not vanish; its long-range part does.

Setting (typical initialisation): tanh RNN, W_h ~ N(0, g²/H) for g in a sweep, W_x ~
N(0, 1/I), inputs x_t ~ N(0, 1), a batch of B sequences per seed. The loss is a random
unit readout at the last step, ℓ_τ = r·h_τ (τ = T-1), so G_d, the gradient through θ's
use at distance d = τ - t, is ``by_step[τ - d]``. Measured per seed and g:

- ‖total g‖ against T (the last-step loss at τ = T-1 for each T, and the mean loss
  (1/T) Σ_τ ℓ_τ), from one length-T_max run: the network is causal, so the loss at
  τ = T-1 of the long run is the loss of a length-T run;
- shares ‖Σ_{d≤10} G_d‖/‖g‖ and ‖Σ_{d>50} G_d‖/‖g‖, and the tail share
  tail(D) = ‖Σ_{d>D} G_d‖/‖g‖ for every D;
- the fitted per-step rate of log ‖G_d‖ (d ∈ [5, 100], above float underflow), beside
  ln ρ(W_h) (numpy eigenvalues) and the top Lyapunov exponent of Π_t ∂h_t/∂h_{t-1}.

Criterion (CLAIMS.md), per g, thresholds fixed before the default run:
(a) bounded: min over T of the median ‖g(T)‖ ≥ 0.5 × the median ‖g(T_min)‖;
(b) exponential fall of the long-range share: the tail share's fitted rate ≤ -0.02 per
step with r² ≥ 0.8 (D from 10 to where it reaches float underflow), and the d > 50
share below the d ≤ 10 share. SUPPORTED if (a) and (b) hold at every g and after
training, NUANCED if at some, NOT SUPPORTED if at none.

After training (default and full scale; skipped at --quick): tanh RNNs (g = 1) trained
with ``gradpaths.train`` on the adding task (Adam), then measured in the same way on
adding-task inputs of length T_max, with r the trained readout direction.

A near-linear reference (g = 0.5, inputs scaled by 0.1) checks the small-g theory:
decay ≈ ln ρ(W) ≈ top Lyapunov exponent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import gradpaths as gp
from experiments import _common as C
from gradpaths import tasks
from gradpaths import train as gt
from gradpaths.plots import norms

CLAIM, NAME = "C2", "c2_vanishing"
TITLE = "C2: the total RNN gradient stays O(1) while its long-range part vanishes"
SHORT, LONG = 10, 50
FIT_D = (5, 100)
BOUND_RATIO, TAIL_RATE, TAIL_R2 = 0.5, -0.02, 0.8
GAINS = (0.5, 0.9, 1.0, 1.5)
NEAR_LINEAR = (0.5, 0.1)  # (g, input scale) for the small-g reproduction


def readout_loss(hs, r, w_T):
    """L = Σ_τ w_τ r·h_τ, averaged over the batch: hs [B, T, H], r [H], w_T [T]."""
    return jnp.einsum("bth,h,t->", hs, r, w_T) / hs.shape[0]


def floor(dtype) -> float:
    """Norms at or below this are in float underflow and are not fitted."""
    return float(jnp.finfo(dtype).tiny) * 1e6


def analyse(cell, params, xs, r, w_rows, burn_in):
    """One network and batch, for each row w of loss weights (``total_weights``).

    Returns a dict with, per row: ‖g‖ (``total``), and, with distances counted from the
    last step (meaningful for the last-step row at T_max): g_d [T] (‖G_d‖, d = 0..T-1),
    tail [T] (tail share after D = 0..T-1), short, long (shares); and ``lyap``, the top
    Lyapunov exponent (mean over the batch).
    """
    n_t = xs.shape[-2]

    def row(w):
        d = gp.decompose(cell, params, xs, lambda hs: readout_loss(hs, r, w), parts=("step",))
        g_norm = norms(jax.tree.map(lambda g: g.astype(jnp.float64), d.total), 0)
        by_d = jax.tree.map(lambda g: g[::-1].astype(jnp.float64), d.by_step)  # f64: Σ g² must not underflow
        part = lambda lo, hi: norms(jax.tree.map(lambda g: g[lo:hi].sum(0), by_d), 0) / g_norm
        tail_sums = jax.tree.map(lambda g: jnp.cumsum(g[::-1], 0)[::-1], by_d)  # Σ_{d' ≥ d}
        tail = jnp.concatenate([norms(tail_sums, 1)[1:], jnp.zeros(1, g_norm.dtype)]) / g_norm
        return {
            "total": g_norm,
            "g_d": norms(by_d, 1),
            "tail": tail,
            "short": part(0, SHORT + 1),
            "long": part(LONG + 1, n_t),
        }

    out = jax.lax.map(row, w_rows)
    out["lyap"] = gp.lyapunov_exponents(cell, params, xs, 1, burn_in=burn_in)[..., 0].mean()
    return out


def make_batches(cell, key, n, n_i, n_b, n_t, dtype):
    """n independent (params, xs [B, T, I], unit readout r [H]), stacked on a leading axis.

    Drawn in their own jitted call, so the analysis compiles without a random generator.
    """

    def one(k):
        kp, kx, kr = jax.random.split(k, 3)
        r = jax.random.normal(kr, (cell.hidden_size,), dtype)
        return cell.init(kp, n_i, dtype), jax.random.normal(kx, (n_b, n_t, n_i), dtype), r / jnp.linalg.norm(r)

    return shard_seeds(jax.jit(jax.vmap(one))(jax.random.split(key, n)))


def shard_seeds(tree):
    """Splits the leading (seed) axis over the devices when there are several and it divides.

    Later ``jit(vmap(...))`` calls on these arrays then run each device's seeds there.
    """
    devices = jax.devices()
    n = {leaf.shape[0] for leaf in jax.tree.leaves(tree)}
    if len(devices) < 2 or len(n) != 1 or n.pop() % len(devices):
        return tree
    mesh = jax.sharding.Mesh(np.asarray(devices), ("seeds",))
    return jax.device_put(tree, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds")))


def total_weights(t_list, n_t, dtype):
    """Rows of loss weights over τ: the last step T-1, then the mean over τ < T, for each T.

    Row len(t_list) - 1 is the last-step loss of the full length-T_max run.
    """
    last = np.zeros((len(t_list), n_t))
    mean = np.zeros((len(t_list), n_t))
    for i, t in enumerate(t_list):
        last[i, t - 1] = 1.0
        mean[i, :t] = 1.0 / t
    return jnp.asarray(np.concatenate([last, mean]), dtype)


def trained(args: C.Args, n_h, n_t, n_b, w_totals):
    """Trains tanh RNNs on the adding task, then runs ``analyse`` on adding-task inputs.

    Returns (analysis outputs [seed, ...], the trained W_h [seed, H, H], final task loss [seed]).
    """
    t_train, steps = args.pick((20, 40), (50, 600), (100, 5000))
    n_seeds = args.n_seeds(2, 4, 16)
    cfg = gt.TrainConfig(task="adding", T=t_train, cell="rnn", hidden_size=n_h, steps=steps, segment=steps)
    keys = jax.random.split(jax.random.key(21), n_seeds)
    res = jax.jit(jax.vmap(gt.make_train(cfg)))(keys)
    cell = gt.make_cell(cfg)
    task = tasks.make("adding", n_t)

    def one(p, readout, key):
        r = readout["W"][:, 0] / jnp.linalg.norm(readout["W"][:, 0])
        xs = task.sample(key, n_b).inputs.astype(p["W_x"].dtype)
        return analyse(cell, p, xs, r, w_totals.astype(p["W_x"].dtype), burn_in=n_t // 8)

    params = res.state.params
    out = jax.jit(jax.vmap(one))(params["cell"], params["readout"], jax.random.split(jax.random.key(22), n_seeds))
    return out, params["cell"]["W_h"], res.metrics.loss[:, -1]


def row_stats(c: dict, rho, t_list, fl: float, n_t: int) -> dict:
    """Medians over seeds of one configuration's measurements (``c``: arrays [seed, ...])."""
    n_tot = len(t_list)
    med_last = np.median(c["totals"][:, :n_tot], 0)
    rate = np.asarray(gp.fit_decay_rate(c["g_d"], d_min=FIT_D[0], d_max=FIT_D[1], floor=fl).rate)
    tail_fit = gp.fit_decay_rate(c["tail"], d_min=SHORT, d_max=n_t - 2, floor=fl)
    return {
        "total_last_vs_T": med_last,
        "total_mean_vs_T": np.median(c["totals"][:, n_tot:], 0),
        "total_ratio": float(med_last.min() / med_last[0]),
        "short_share": float(np.median(c["short"])),
        "long_share": float(np.median(c["long"])),
        "tail_rate": float(np.median(np.asarray(tail_fit.rate))),
        "tail_r2": float(np.median(np.asarray(tail_fit.r2))),
        "decay_rate": float(np.median(rate)),
        "decay_rate_iqr": np.percentile(rate, [25, 75]),
        "log_rho": float(np.median(np.log(rho))),
        "lyapunov": float(np.median(c["lyap"])),
    }


def holds(row: dict) -> bool:
    """The CLAIMS.md criterion at one g (see the module docstring)."""
    bounded = row["total_ratio"] >= BOUND_RATIO
    falls = row["tail_rate"] <= TAIL_RATE and row["tail_r2"] >= TAIL_R2
    return bool(bounded and falls and row["long_share"] < row["short_share"])


def verdict(rows: list[dict]) -> str:
    """SUPPORTED if the criterion holds at every g, NUANCED at some, NOT SUPPORTED at none."""
    if not rows:
        raise ValueError("verdict needs at least one row (one per recurrent scale g)")
    ok = [holds(r) for r in rows]
    return C.all_some_none(ok)


def run(args: C.Args) -> C.Outcome:
    n_t, n_h, n_b = args.pick((80, 16, 4), (400, 64, 4), (1000, 128, 16))
    t_list = args.pick((10, 20, 40, 80), (25, 50, 100, 200, 400), (25, 50, 100, 200, 400, 1000))
    n_seeds = args.n_seeds(3, 8, 64)
    n_i, dtype = 4, args.dtype
    configs = [(g, 1.0) for g in GAINS] + [NEAR_LINEAR]
    cell = gp.rnn(n_h)
    w_totals = total_weights(t_list, n_t, dtype)

    def one(params, xs, r, gain, in_scale):
        params = {**params, "W_h": params["W_h"] * gain, "W_x": params["W_x"] * in_scale}
        return analyse(cell, params, xs, r, w_totals, burn_in=n_t // 8), params["W_h"]

    key = jax.random.key(2, impl="unsafe_rbg")
    params, xs, r = make_batches(cell, key, n_seeds, n_i, n_b, n_t, dtype)
    gains = jnp.asarray([c[0] for c in configs], dtype)
    in_scales = jnp.asarray([c[1] for c in configs], dtype)
    C.progress(f"  C2: {n_seeds} seeds x {len(configs)} configs, T={n_t}, H={n_h}, B={n_b}")
    per_config = jax.vmap(one, (None, None, None, 0, 0))
    out, w_h = jax.jit(jax.vmap(per_config, (0, 0, 0, None, None)))(params, xs, r, gains, in_scales)
    main = len(t_list) - 1  # the last-step loss at T_max

    def split(o):
        o = jax.tree.map(lambda v: np.asarray(v, float), o)
        return {
            "totals": o["total"],
            "lyap": o["lyap"],
            **{k: o[k][..., main, :] for k in ("g_d", "tail")},
            **{k: o[k][..., main] for k in ("short", "long")},
        }

    per = [jax.tree.map(lambda v, j=j: v[:, j], split(out)) for j in range(len(configs))]  # [config][key][seed, ...]
    rhos = [np.abs(np.linalg.eigvals(np.asarray(w_h[:, j], np.float64))).max(-1) for j in range(len(configs))]
    if not args.quick:  # training needs more steps than a quick run allows
        C.progress("  C2: training tanh RNNs on the adding task (the after-training row)")
        out_tr, w_tr, loss_tr = trained(args, n_h, n_t, n_b, w_totals)
        per.append(split(out_tr))
        rhos.append(np.abs(np.linalg.eigvals(np.asarray(w_tr, np.float64))).max(-1))
        configs = [*configs, ("trained", 1.0)]
    fl = floor(dtype)
    rows = [row_stats(c, rho, t_list, fl, n_t) for c, rho in zip(per, rhos)]
    for r, (g, s_in) in zip(rows, configs):
        r.update(g=g, input_scale=s_in)
    trained_note = "Not measured at --quick: trained networks."
    if not args.quick:
        rows[-1]["final_task_loss"] = float(np.median(np.asarray(loss_tr)))
        trained_note = (
            "The trained row: tanh RNNs (g=1) trained on the adding task (final task MSE "
            f"{C.fmt(rows[-1]['final_task_loss'])}, baseline 1/6 ≈ 0.167), measured on adding-task inputs of "
            f"length {n_t}."
        )
    sweep = [r for r in rows if r["input_scale"] == 1.0]  # the g sweep and the trained networks
    v = verdict(sweep)
    for r in rows:
        r["holds"] = holds(r)
    ref = next(r for r in sweep if r["g"] == 1.0)
    headline = (
        f"g=1: ‖g‖(T={t_list[-1]})/‖g‖(T={t_list[0]}) = {C.fmt(ref['total_ratio'])}, share d≤{SHORT} "
        f"{C.fmt(ref['short_share'])} vs d>{LONG} {C.fmt(ref['long_share'])}; decay rate "
        + ", ".join(f"{C.fmt(r['decay_rate'])} (g={r['g']})" for r in sweep)
        + f"; criterion holds at g ∈ {{{', '.join(str(r['g']) for r in sweep if r['holds']) or 'none'}}}"
    )
    lin = next(r for r in rows if r["input_scale"] != 1.0)
    typ = next(r for r in sweep if r["g"] == NEAR_LINEAR[0])
    reps = tuple(
        C.Reproduction(
            "small-g theory (CLAIMS.md [computed])",
            f"tanh RNN, W~N(0,g²/N), g={r['g']}, H={n_h}, inputs ×{r['input_scale']}",
            "per-step decay ≈ ln ρ(W) ≈ top Lyapunov exponent ≈ -0.63 (ln 0.5 = -0.69)",
            f"decay {C.fmt(r['decay_rate'])}, ln ρ(W) {C.fmt(r['log_rho'])}, λ₁ {C.fmt(r['lyapunov'])}",
            bool(abs(r["decay_rate"] - r["log_rho"]) <= 0.1 and abs(r["decay_rate"] - r["lyapunov"]) <= 0.1),
        )
        for r in (lin, typ)
    )
    table = "\n".join(
        f"| {r['g']} | {r['input_scale']} | {C.fmt(r['total_ratio'])} | {C.fmt(r['short_share'])} | "
        f"{C.fmt(r['long_share'])} | {C.fmt(r['tail_rate'])} (r²={r['tail_r2']:.2f}) | {C.fmt(r['decay_rate'])} | "
        f"{C.fmt(r['log_rho'])} | {C.fmt(r['lyapunov'])} | {'yes' if r['holds'] else 'no'} |"
        for r in rows
    )
    summary = (
        f"tanh RNN, H={n_h}, T={n_t}, batch {n_b}, {n_seeds} seeds (medians), {jnp.dtype(dtype).name}; "
        f"loss r·h_{{T-1}}. Criterion per g: ‖g‖ ratio ≥ {BOUND_RATIO}, tail-share rate ≤ {TAIL_RATE} "
        f"with r² ≥ {TAIL_R2}, d>{LONG} share < d≤{SHORT} share. The row with inputs ×0.1 is the "
        "near-linear reference, not part of the verdict. " + trained_note + "\n\n"
        f"| g | input scale | min‖g(T)‖/‖g(T={t_list[0]})‖ | share d≤{SHORT} | share d>{LONG} | tail-share rate | "
        "decay rate of ‖G_d‖ | ln ρ(W) | top Lyapunov | criterion |\n|---|---|---|---|---|---|---|---|---|---|\n"
        + table
        + "\n\nRates are nats per step. Under typical input drive the decay rate follows the top Lyapunov "
        "exponent (which includes the tanh' < 1 factors), not ln ρ(W); the gap between the two is the "
        "mean log tanh' along the trajectory."
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c2_vanishing.png", reps)
    fig = _figure(per, rows, t_list, n_t, fl)
    C.write_outputs(
        args,
        NAME,
        config={"T": n_t, "H": n_h, "B": n_b, "I": n_i, "T_list": t_list, "configs": configs, "fit_d": FIT_D},
        data={
            "rows": rows,
            "median_g_d": {f"g={g},in={s}": np.median(c["g_d"], 0) for c, (g, s) in zip(per, configs)},
            "median_tail": {f"g={g},in={s}": np.median(c["tail"], 0) for c, (g, s) in zip(per, configs)},
        },
        outcome=outcome,
        summary=summary,
        figures={"c2_vanishing.png": fig},
        seeds=n_seeds,
    )
    return outcome


def band(ax, x, y_SX, color, label, lw=1.6):
    """Median line and the 25-75 % band across seeds (rows of y_SX).

    A point is drawn only where every seed is positive and finite, so the median never
    jumps between seeds as some fall into underflow.
    """
    y = np.where(np.isfinite(y_SX) & (y_SX > 0), y_SX, np.nan)
    med = np.median(y, 0)
    lo, hi = np.percentile(y, 25, 0), np.percentile(y, 75, 0)
    ax.plot(x, med, color=color, lw=lw, label=label)
    ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)


def _figure(per, rows, t_list, n_t, fl):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, NullLocator, ScalarFormatter

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.0))
    d = np.arange(n_t)
    for j, (c, r) in enumerate(zip(per, rows)):
        lab = f"g={r['g']}" if r["g"] != "trained" else "trained (adding)"
        lab += "" if r["input_scale"] == 1.0 else f", inputs ×{r['input_scale']}"
        col, ls = f"C{j}", "-" if r["input_scale"] == 1.0 else ":"
        g_d = c["g_d"]
        band(axes[0], d, np.where(g_d > fl, g_d, np.nan), col, lab)
        axes[0].lines[-1].set_linestyle(ls)
        seen = np.all(g_d > fl, 0)
        fit_d = np.arange(FIT_D[0], min(FIT_D[1], n_t - 1) + 1)
        fit_d = fit_d[seen[fit_d]]
        if fit_d.size:
            y0 = np.median(g_d[:, fit_d[0]])
            axes[0].plot(fit_d, y0 * np.exp(r["lyapunov"] * (fit_d - fit_d[0])), color=col, lw=0.8, ls="--")
        if r["input_scale"] == 1.0:
            band(axes[1], np.asarray(t_list), c["totals"][:, : len(t_list)], col, lab)
            axes[1].plot(t_list, r["total_mean_vs_T"], color=col, ls=":", marker=".", lw=1)
            band(axes[2], d, np.where(c["tail"] > fl, c["tail"], np.nan), col, lab)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("distance d (steps)")
    axes[0].set_ylabel("‖G_d‖ (median, 25–75 % band)")
    axes[0].set_title("per-distance gradient; dashed: slope = top Lyapunov exp.", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xticks(t_list, [str(t) for t in t_list])
    axes[1].xaxis.set_minor_locator(NullLocator())
    axes[1].yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes[1].yaxis.set_major_formatter(ScalarFormatter())
    axes[1].yaxis.set_minor_formatter(NullFormatter())
    axes[1].set_xlabel("sequence length T (steps)")
    axes[1].set_ylabel("‖total g‖\n(solid: loss at T-1; dotted: mean loss)")
    axes[1].set_title("total gradient against T", fontsize=9)
    axes[2].set_yscale("log")
    axes[2].set_xlabel("D (steps)")
    axes[2].set_ylabel("tail share ‖Σ_{d>D} G_d‖ / ‖g‖")
    axes[2].axvline(LONG, color="k", lw=0.6, ls=":")
    axes[2].set_title("long-range share", fontsize=9)
    ref = next(r for r in rows if r["g"] == 1.0)
    fig.suptitle(
        f"C2: ‖g‖ stays O(1) for T = {t_list[0]}…{t_list[-1]} (min ‖g(T)‖/‖g({t_list[0]})‖ = "
        f"{C.fmt(ref['total_ratio'])} at g=1) while the d>{LONG} share is {C.fmt(ref['long_share'])}; holds at g ∈ "
        f"{{{', '.join(str(r['g']) for r in rows if r['holds'] and r['input_scale'] == 1.0) or 'none'}}}"
    )
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
