"""C5: does one non-vanishing path (the highway) keep the long-range LSTM gradient alive?

Setting: LSTM at initialisation (orthogonal W_h, W_x ~ N(0, 1/I), inputs N(0, 1), a batch
of B sequences per seed), forget-gate bias b_f ∈ {-2, 0, 1, 2, 3, 5} and chrono
(b_f ~ log U[1, T-1], b_i = -b_f), the same weights for every bias. Loss: a random unit
readout at the last step, ℓ = r·h_{T-1}, so the step t is at distance d = T-1-t.

The exact joint table G_{d,k} (distance d, hop class k; class K collects ≥ K hops) is
built from the hop-class state adjoints of ``gp.decompose(..., parts=("state",))``:
G_{t,k} = (∂⁺F_t/∂θ)ᵀ λ_t^{[k]}, one VJP of the step per (t, k). For a single loss time
this equals ``by_distance_hops`` (tested), at O(T) instead of O(T²) cost. It sums to
jax.grad; the relative error is measured on every run.

At long range (d ≥ D_LONG) we report, per bias (medians over seeds): the size of the
long-range gradient ‖G_long‖/‖g‖; each class's projection share ⟨G^{[k]}, G_long⟩/‖G_long‖²
(these sum to 1 exactly; negative = opposing); the norm shares; the cosine between the
highway class and the k ≥ 1 paths; the cancellation ratio ‖Σ_k G^{[k]}‖/Σ_k‖G^{[k]}‖; and
the dominant and mean hop count.

Verdict rule (set before the default run):
- NOT SUPPORTED if the decomposition is not exact (rel. error above 1e-5 f32 / 1e-12 f64),
  or no bias keeps a long-range gradient (‖G_long‖/‖g‖ ≥ SURVIVE);
- among the biases where it survives, the highway carries it if its projection share is
  ≥ 0.5. SUPPORTED if the highway carries it at every such bias, NOT SUPPORTED if at
  none (the surviving gradient comes from mixed, many-hop paths), NUANCED otherwise.

Points are cached per bias (``points/``) and shared with c7_forget_bias and
distance_hops_map, which read the same sweep. The sweep always runs in float64: at
b_f = -2 the gradient 100 steps back is ≈ σ(-2)^100 ≈ 1e-92, which float32 flushes to 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import gradpaths as gp
from experiments import _common as C
from experiments.c2_vanishing import band, make_batches, readout_loss
from gradpaths.plots import hop_labels

CLAIM, NAME = "C5", "c5_paths"
TITLE = "C5: which paths carry the surviving long-range LSTM gradient"
BIASES = (-2.0, 0.0, 1.0, 2.0, 3.0, 5.0)
SETTINGS = tuple(f"b_f={b:g}" for b in BIASES) + ("chrono",)
SURVIVE, HIGHWAY_SHARE = 1e-3, 0.5
TOL = 1e-12  # exactness in float64
# Always float64: at b_f = -2 the gradient 100 steps back is ~σ(-2)^100 ≈ 1e-92, below float32's range.
DTYPE = "float64"


def sizes(args: C.Args) -> dict:
    """The sweep's sizes at this scale (shared with c7_forget_bias and distance_hops_map)."""
    n_t, n_h, n_b, max_hops = args.pick((40, 8, 2, 8), (200, 32, 4, 16), (500, 128, 16, 32))
    return {
        "T": n_t,
        "H": n_h,
        "B": n_b,
        "I": 4,
        "max_hops": max_hops,
        "d_long": args.pick(20, 100, 250),
        "d_at": args.pick(20, 100, 100),
        "seeds": args.n_seeds(3, 6, 32),
        "dtype": DTYPE,
    }


def step_hop_grads(cell, params, xs, state_grads, d_long: int, d_at: int):
    """Reductions of G_{t,k} = (∂⁺F_t/∂θ)ᵀ λ_t^{[k]} for a loss at the last step.

    Args:
      xs: [B, T, I]. state_grads: ``decompose(..., parts=("state",)).state_grads``,
        leaves [T, K+1, B, ...].
      d_long, d_at: the long-range window d ≥ d_long and the single distance d_at.

    Returns:
      (norm_dk [T, K+1] = ‖G_{d,k}‖ with d = T-1-t, long_kP [K+1, P] = Σ_{d ≥ d_long} G_{d,k},
      at_kP [K+1, P] = G_{d_at,k}, total_P [P] = Σ_{t,k} G_{t,k}), P = flattened params.
    """
    n_t = xs.shape[-2]
    s0 = cell.zero_state((xs.shape[0],), xs.dtype)
    states = jax.tree.map(lambda v: jnp.swapaxes(v, 0, 1), gp.unroll_states(cell, params, xs))  # [T, B, H]
    prev = jax.tree.map(lambda z, s: jnp.concatenate([z[None], s[:-1]]), s0, states)
    flat = lambda tree: ravel_pytree(tree)[0]
    zeros_kP = jnp.zeros((state_grads[0].shape[1], flat(params).size), xs.dtype)

    def body(carry, inp):
        long_kP, at_kP = carry
        t, x_t, prev_t, lam_k = inp
        _, vjp = jax.vjp(lambda p: cell.step(p, prev_t, x_t), params)
        g_kP = jax.vmap(lambda lam: flat(vjp(lam)[0]))(lam_k)
        d = n_t - 1 - t
        long_kP = long_kP + jnp.where(d >= d_long, g_kP, 0.0)
        at_kP = at_kP + jnp.where(d == d_at, g_kP, 0.0)
        return (long_kP, at_kP), (jnp.linalg.norm(g_kP, axis=-1), g_kP.sum(0))

    x_TBI = jnp.swapaxes(xs, 0, 1)
    (long_kP, at_kP), (norm_tk, g_tP) = jax.lax.scan(
        body, (zeros_kP, zeros_kP), (jnp.arange(n_t), x_TBI, prev, state_grads)
    )
    return norm_tk[::-1], long_kP, at_kP, g_tP.sum(0)


def class_stats(g_kP, total_P):
    """Shares and cosines of the hop classes of one window (rows of g_kP sum to its total)."""
    g = g_kP.sum(0)
    gg = jnp.sum(g * g)
    nk = jnp.linalg.norm(g_kP, axis=-1)
    rest = g - g_kP[0]
    cos = jnp.sum(g_kP[0] * rest) / (nk[0] * jnp.linalg.norm(rest))
    hops = jnp.arange(g_kP.shape[0], dtype=g.dtype)
    return {
        "norm": jnp.sqrt(gg),
        "size": jnp.sqrt(gg) / jnp.linalg.norm(total_P),
        "proj_share": g_kP @ g / gg,
        "norm_share": nk / jnp.sqrt(gg),
        "cos_highway_rest": cos,
        "cancellation": jnp.sqrt(gg) / nk.sum(),
        "mean_hops": jnp.sum(hops * nk) / nk.sum(),
    }


def analyse(cell, params, xs, r, sz):
    """All figures for one network and batch (see the module docstring)."""
    w = jnp.zeros(xs.shape[-2], xs.dtype).at[-1].set(1)
    loss = lambda hs: readout_loss(hs, r, w)
    d = gp.decompose(cell, params, xs, loss, max_hops=sz["max_hops"], parts=("state",))
    norm_dk, long_kP, at_kP, total_P = step_hop_grads(cell, params, xs, d.state_grads, sz["d_long"], sz["d_at"])
    ref = ravel_pytree(jax.grad(lambda p: loss(gp.unroll(cell, p, xs)))(params))[0]
    return {
        "norm_dk": norm_dk,
        "exact_err": jnp.linalg.norm(total_P - ref) / jnp.linalg.norm(ref),
        "total": jnp.linalg.norm(ref),
        "long": class_stats(long_kP, ref),
        "at": class_stats(at_kP, ref),
    }


def sweep(args: C.Args) -> dict[str, dict]:
    """The forget-bias sweep: {setting: results as lists}, each setting cached on disk.

    The draws and the jitted analysis are built only when a setting is not cached yet.
    """
    sz = sizes(args)
    dtype = jnp.dtype(DTYPE)
    built: dict = {}

    def build():
        cell = gp.lstm(sz["H"], forget_bias=0.0)
        key = jax.random.key(5, impl="unsafe_rbg")
        built["data"] = make_batches(cell, key, sz["seeds"], sz["I"], sz["B"], sz["T"], dtype)
        chrono = gp.lstm(sz["H"], chrono=sz["T"])
        b_chrono = jax.jit(jax.vmap(lambda k: chrono.init(k, sz["I"], dtype)["b"]))(
            jax.random.split(jax.random.key(6, impl="unsafe_rbg"), sz["seeds"])
        )
        f_block = slice(sz["H"], 2 * sz["H"])
        built["b"] = {s: jnp.zeros_like(b_chrono).at[:, f_block].set(b) for s, b in zip(SETTINGS, BIASES)}
        built["b"]["chrono"] = b_chrono
        built["f"] = jax.jit(jax.vmap(lambda p, x, r_, b: analyse(cell, {**p, "b": b}, x, r_, sz)))

    def compute(s):
        if not built:
            build()
        return built["f"](*built["data"], built["b"][s])

    tag = f"{args.scale}-{DTYPE}-s{sz['seeds']}"
    out = {}
    for s in SETTINGS:
        out[s] = C.cached(args.dir(NAME) / "points" / f"{tag}-{s}.json", lambda s=s: compute(s))
        C.progress(f"  LSTM forget-bias sweep: {s} done")
    return out


def verdict(max_err: float, tol: float, sizes_: list[float], highway_shares: list[float]) -> str:
    """The rule in the module docstring; sizes_ and highway_shares are per bias (medians)."""
    if len(sizes_) != len(highway_shares) or not sizes_:
        raise ValueError(f"need one size and one highway share per bias, got {len(sizes_)} and {len(highway_shares)}")
    if not max_err <= tol:
        return C.NOT_SUPPORTED
    carried = [h >= HIGHWAY_SHARE for s, h in zip(sizes_, highway_shares) if s >= SURVIVE]
    if not carried or not any(carried):
        return C.NOT_SUPPORTED
    return C.SUPPORTED if all(carried) else C.NUANCED


def dominant(norm_share, labels) -> str:
    """The label of the largest class, or "—" where the window's gradient is zero or not finite."""
    ns = np.asarray(norm_share, float)
    return labels[int(np.argmax(ns))] if np.all(np.isfinite(ns)) and ns.max() > 0 else "—"


def summarise(res: dict, window: str) -> dict[str, dict]:
    """Medians over seeds of each setting's window statistics."""
    out = {}
    for s, r in res.items():
        w = {k: np.asarray(v, float) for k, v in r[window].items()}
        out[s] = {k: np.median(v, 0) for k, v in w.items()}
        out[s]["proj_share_iqr"] = np.percentile(w["proj_share"][:, 0], [25, 75])
    return out


def run(args: C.Args) -> C.Outcome:
    sz = sizes(args)
    res = sweep(args)
    stats = summarise(res, "long")
    max_err = max(max(r["exact_err"]) for r in res.values())
    tol = TOL
    v = verdict(max_err, tol, [stats[s]["size"] for s in SETTINGS], [stats[s]["proj_share"][0] for s in SETTINGS])
    survivors = [s for s in SETTINGS if stats[s]["size"] >= SURVIVE]
    many_hop = [s for s in survivors if stats[s]["proj_share"][0] < HIGHWAY_SHARE]
    k_lab = hop_labels(sz["max_hops"] + 1)
    dom = {s: dominant(stats[s]["norm_share"], k_lab) for s in SETTINGS}
    plain = (
        f"At d ≥ {sz['d_long']} the surviving gradient comes from mixed, many-hop paths, not the highway, at "
        + ", ".join(
            f"{s} (highway share {C.fmt(stats[s]['proj_share'][0])}, dominant class {dom[s]})" for s in many_hop
        )
        + "."
        if many_hop
        else "Wherever a long-range gradient survives, the highway class carries at least half of it."
    )
    headline = f"exact (max rel. err {C.fmt(max_err)}); at d≥{sz['d_long']}: " + "; ".join(
        f"{s}: size {C.fmt(stats[s]['size'])}, highway share {C.fmt(stats[s]['proj_share'][0])}, mean hops "
        f"{C.fmt(stats[s]['mean_hops'])}"
        for s in SETTINGS
        if s in ("b_f=1", "b_f=3", "b_f=5", "chrono")
    )
    rows = "\n".join(
        f"| {s} | {C.fmt(stats[s]['size'])} | {C.fmt(stats[s]['proj_share'][0])} "
        f"[{C.fmt(stats[s]['proj_share_iqr'][0])}, {C.fmt(stats[s]['proj_share_iqr'][1])}] | "
        f"{C.fmt(stats[s]['norm_share'][0])} | {C.fmt(stats[s]['cos_highway_rest'])} | "
        f"{C.fmt(stats[s]['cancellation'])} | {C.fmt(stats[s]['mean_hops'])} | {dom[s]} |"
        for s in SETTINGS
    )
    summary = (
        f"LSTM H={sz['H']}, T={sz['T']}, batch {sz['B']}, {sz['seeds']} seeds (medians), max_hops={sz['max_hops']}, "
        f"{DTYPE}; loss r·h_{{T-1}}; long range = d ≥ {sz['d_long']}. Σ_k,d G = jax.grad to "
        f"{C.fmt(max_err)} (tolerance {tol:g}). Survives: ‖G_long‖/‖g‖ ≥ {SURVIVE:g}; highway carries it: "
        f"projection share ≥ {HIGHWAY_SHARE}.\n\n**{plain}**\n\n"
        "| setting | ‖G_long‖/‖g‖ | highway projection share [IQR] | highway norm share | cos(highway, k≥1 paths) "
        "| cancellation ‖ΣG_k‖/Σ‖G_k‖ | mean hops | dominant class |\n|---|---|---|---|---|---|---|---|\n"
        + rows
        + "\n\nProjection shares ⟨G_k, G⟩/‖G‖² sum to 1 over the classes; a cancellation ratio near 1 means the "
        "classes add up rather than cancel."
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c5_paths.png")
    fig = _figure(res, stats, sz)
    C.write_outputs(
        args,
        NAME,
        config=sz,
        data={"max_rel_err": max_err, "long_range": stats, "survivors": survivors, "many_hop": many_hop},
        outcome=outcome,
        summary=summary,
        figures={"c5_paths.png": fig},
        seeds=sz["seeds"],
    )
    return outcome


def _figure(res, stats, sz):
    import matplotlib.pyplot as plt

    k1 = sz["max_hops"] + 1
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1.3, 1, 1]})
    x = np.arange(len(SETTINGS))
    # means over seeds, so each bar's classes sum to exactly 1
    shares = np.array([np.mean(np.asarray(res[s]["long"]["proj_share"], float), 0) for s in SETTINGS])
    cmap = plt.get_cmap("viridis")
    bottom_pos, bottom_neg = np.zeros(len(SETTINGS)), np.zeros(len(SETTINGS))
    for k in range(k1):
        y = shares[:, k]
        pos, neg = np.maximum(y, 0), np.minimum(y, 0)
        col = "C3" if k == 0 else cmap((k - 1) / max(k1 - 2, 1))
        axes[0].bar(x, pos, bottom=bottom_pos, color=col, label="0 hops (highway)" if k == 0 else None)
        axes[0].bar(x, neg, bottom=bottom_neg, color=col)
        bottom_pos, bottom_neg = bottom_pos + pos, bottom_neg + neg
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(1, k1 - 1))
    fig.colorbar(sm, ax=axes[0], label=f"hop class k (≥{k1 - 1} at the top)", pad=0.01)
    axes[0].axhline(0, color="k", lw=0.6)
    axes[0].set_xticks(x, SETTINGS, fontsize=8)
    axes[0].set_ylabel(f"projection share of G(d ≥ {sz['d_long']}), mean over seeds")
    axes[0].legend(fontsize=7, loc="lower left")
    axes[0].set_title("who carries the long-range gradient (shares < 0 oppose the total)", fontsize=9)
    sizes_ = np.array([np.asarray(res[s]["long"]["size"], float) for s in SETTINGS])
    axes[1].boxplot(list(np.maximum(sizes_, 1e-300)), positions=x, widths=0.5)
    axes[1].set_yscale("log")
    axes[1].axhline(SURVIVE, color="k", ls=":", lw=0.8, label=f"survives (≥ {SURVIVE:g})")
    axes[1].set_xticks(x, SETTINGS, fontsize=8)
    axes[1].set_ylabel(f"‖G(d ≥ {sz['d_long']})‖ / ‖g‖ (seeds)")
    axes[1].legend(fontsize=7)
    axes[1].set_title("size of the long-range gradient", fontsize=9)
    hops = np.arange(k1)
    for j, s in enumerate(SETTINGS):
        ns = np.asarray(res[s]["long"]["norm_share"], float)
        band(axes[2], hops, ns, f"C{j}", s)
    axes[2].set_yscale("log")
    axes[2].set_ylim(1e-8, 3)
    axes[2].set_xticks(hops[::2])
    axes[2].set_xlabel(f"hop class k (last: ≥{k1 - 1})")
    axes[2].set_ylabel("‖G^[k](d ≥ d_long)‖ / ‖G(d ≥ d_long)‖")
    axes[2].legend(fontsize=7, ncol=2)
    axes[2].set_title("norm share per hop class (median, IQR)", fontsize=9)
    surv = [s for s in SETTINGS if stats[s]["size"] >= SURVIVE]
    carried = [s for s in surv if stats[s]["proj_share"][0] >= HIGHWAY_SHARE]
    fig.suptitle(
        f"C5: the long-range gradient survives at {', '.join(surv) or 'no bias'}; the highway carries it at "
        f"{', '.join(carried) or 'none of them'}"
    )
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
