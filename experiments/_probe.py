"""Shared parts of the at-initialisation gradient experiments (C2-C7, C9, C10, distance_hops_map), and C10's probe.

- ``draws``: n independent (params, inputs [B, T, I], unit readout r) for a cell, seeds on
  the leading axis; ``over_seeds_and``: jit(vmap) of a measurement over seeds × a sweep;
- ``lstm_bias_sweep``: the LSTM forget-bias sweep (the joint distance × hop table from
  ``gp.decompose``) that C5, C7 and distance_hops_map read, cached per setting;
- ``band``: a median line with its 25-75 % band across seeds, for figures;
- ``ci``: the 95 % bootstrap interval of a per-seed statistic (``experiments._stats``);
- C10's ``HIGHWAY_ONLY`` cells, ``matched`` widths (parameter counts) and ``long_range`` probe.
"""

from __future__ import annotations

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np

import gradpaths as gp
from experiments import _common as C
from experiments import _stats as S
from gradpaths import analysis as A


def shard_seeds(tree):
    """Splits the leading (seed) axis over the devices when there are several and it divides."""
    devices = jax.devices()
    n = {leaf.shape[0] for leaf in jax.tree.leaves(tree)}
    if len(devices) < 2 or len(n) != 1 or n.pop() % len(devices):
        return tree
    mesh = jax.sharding.Mesh(np.asarray(devices), ("seeds",))
    return jax.device_put(tree, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("seeds")))


def draws(cell, key, n: int, n_i: int, n_b: int, n_t: int, dtype):
    """n independent (params, xs [B, T, I] ~ N(0, 1), unit readout r [H]), stacked on a leading seed axis.

    Drawn in their own jitted call, so a measurement compiles without a random generator.
    """

    def one(k):
        kp, kx, kr = jax.random.split(k, 3)
        r = jax.random.normal(kr, (cell.hidden_size,), dtype)
        return cell.init(kp, n_i, dtype), jax.random.normal(kx, (n_b, n_t, n_i), dtype), r / jnp.linalg.norm(r)

    return shard_seeds(jax.jit(jax.vmap(one))(jax.random.split(key, n)))


def over_seeds_and(fn, data, values):
    """jit(vmap(vmap(fn))) of fn(params, xs, r, value) over seeds (data's leading axis) × values: [seed, value, ...]."""
    inner = jax.vmap(fn, (None, None, None, 0))
    out = jax.jit(jax.vmap(inner, (0, 0, 0, None)))(*data, values)
    return jax.tree.map(lambda v: np.asarray(v), out)


def ci(x, stat: str = "median") -> S.Estimate:
    """The statistic of per-seed values x and its 95 % bootstrap interval (non-finite seeds dropped)."""
    a = np.asarray(x, float).ravel()
    a = a[np.isfinite(a)]
    return S.bootstrap_stat(a, stat=stat) if a.size else S.Estimate(np.nan, np.nan, np.nan, 0)


def depth_map(fig, ax, layer_time, title: str) -> None:
    """The time × depth map of a stack: log10 ‖∂L/∂s_t‖ per layer (rows, bottom first) and step, median
    over seeds of ``long_range``'s layer_time [seeds, L, T]; 8 decades of colour."""
    m = np.median(layer_time, 0)
    im = ax.imshow(np.log10(np.maximum(m, 1e-300)), aspect="auto", origin="lower", cmap="magma",
                   vmin=np.log10(m.max()) - 8)  # fmt: skip
    ax.set_yticks(range(m.shape[0]), [f"layer {l}" for l in range(m.shape[0])])
    ax.set_xlabel(f"time step t (loss at t = {m.shape[1] - 1})")
    ax.set_title(f"{title}: log10 ‖∂L/∂s_t‖ per layer", fontsize=9)
    fig.colorbar(im, ax=ax)


def band(ax, x, y_SX, color, label, lw=1.6, ls="-"):
    """Median line and 25-75 % band across seeds (rows of y_SX); entries ≤ 0 or not finite are dropped."""
    y = np.where(np.isfinite(y_SX) & (y_SX > 0), y_SX, np.nan)
    ax.plot(x, np.median(y, 0), color=color, lw=lw, ls=ls, label=label)
    ax.fill_between(x, np.percentile(y, 25, 0), np.percentile(y, 75, 0), color=color, alpha=0.2, lw=0)


# ----------------------------------------------------------------------------- the LSTM forget-bias sweep

BIASES = (-2.0, 0.0, 1.0, 2.0, 3.0, 5.0)
SETTINGS = tuple(f"b_f={b:g}" for b in BIASES) + ("chrono",)


def sweep_sizes(args: C.Args) -> dict:
    """Sizes of the forget-bias sweep. Always float64: at b_f = -2 the gradient 100 steps back is
    ≈ σ(-2)^100 ≈ 1e-92, which float32 flushes to 0. The joint table costs O(T K P) per network."""
    n_t, n_h, n_b, max_hops = args.pick((40, 8, 2, 6), (120, 16, 2, 6), (500, 128, 16, 32))
    return {
        "T": n_t,
        "H": n_h,
        "B": n_b,
        "I": 4,
        "max_hops": max_hops,
        "d_long": args.pick(20, 100, 250),
        "d_at": args.pick(20, 100, 100),
        "seeds": args.n_seeds(4, 64, 64),  # C5 at 16 seeds: chrono share 0.58 [0.42, 0.72], ~52 seeds to decide
        "dtype": "float64",
    }


def _bias_measure(cell, params, xs, r, sz):
    """The reductions of the joint table G_{d,k} that C5, C7 and distance_hops_map read."""
    loss = lambda hs: A.readout_loss(hs, r, A.last_step(xs.shape[-2], xs.dtype))
    d = gp.decompose(cell, params, xs, loss, max_hops=sz["max_hops"], parts=("step_hops",))
    g_DKP = A.by_distance_last_step(d.by_step_hops, lead=2)
    ref = A.flat_lead(jax.grad(lambda p: loss(gp.unroll(cell, p, xs, backward="autodiff")))(params), 0)
    return {
        "norm_dk": jnp.linalg.norm(g_DKP, axis=-1),
        "exact_err": jnp.linalg.norm(g_DKP.sum((0, 1)) - ref) / jnp.linalg.norm(ref),
        "long": A.hop_class_stats(g_DKP[sz["d_long"] :].sum(0), ref),
        "at": A.hop_class_stats(g_DKP[sz["d_at"]], ref),
    }


def bias_setup(sz: dict, n_seeds: int):
    """(cell, draws, {setting: b [seed, 4H]}): one LSTM draw per seed and its biases for every setting."""
    cell = gp.lstm(sz["H"], forget_bias=0.0)
    data = draws(cell, jax.random.key(5), n_seeds, sz["I"], sz["B"], sz["T"], jnp.float64)
    chrono = gp.lstm(sz["H"], chrono=sz["T"])
    keys = jax.random.split(jax.random.key(6), n_seeds)
    b_chrono = jax.jit(jax.vmap(lambda k: chrono.init(k, sz["I"], jnp.float64)["b"]))(keys)
    f_block = slice(sz["H"], 2 * sz["H"])
    biases = {s: jnp.zeros_like(b_chrono).at[:, f_block].set(b) for s, b in zip(SETTINGS, BIASES)}
    return cell, data, {**biases, "chrono": b_chrono}


def lstm_bias_sweep(args: C.Args) -> tuple[dict, dict[str, dict]]:
    """(sizes, {setting: measurements [seed, ...]}): an LSTM at init with the same weights for every b_f.

    Each setting is cached under DIR/.lstm_bias_sweep/ keyed by a hash of the sizes, so the
    three experiments that read it pay for it once and a changed configuration recomputes.
    """
    sz = sweep_sizes(args)
    tag = hashlib.sha1(json.dumps(sz, sort_keys=True).encode()).hexdigest()[:10]
    built: dict = {}

    def compute(s):
        if not built:
            cell, built["data"], built["b"] = bias_setup(sz, sz["seeds"])
            built["f"] = jax.jit(jax.vmap(lambda p, x, r_, b: _bias_measure(cell, {**p, "b": b}, x, r_, sz)))
        return built["f"](*built["data"], built["b"][s])

    out = {}
    for s in SETTINGS:
        path = args.out / ".lstm_bias_sweep" / f"{args.scale}-{tag}-{s}.json"
        out[s] = jax.tree.map(
            lambda v: np.asarray(v, float),
            C.cached(path, lambda s=s: compute(s)),
            is_leaf=lambda v: isinstance(v, list),
        )
        C.progress(f"  LSTM forget-bias sweep: {s} done")
    return sz, out


def cases(verdicts: list[str]) -> str:
    """One verdict from per-case verdicts (per g, per bias): NUANCED if some cases hold and some fail,
    SUPPORTED if all hold, NOT SUPPORTED if all fail, INCONCLUSIVE otherwise (undecided cases, none opposed)."""
    if not verdicts:
        raise ValueError("cases needs at least one per-case verdict")
    if C.SUPPORTED in verdicts and C.NOT_SUPPORTED in verdicts:
        return C.NUANCED
    if all(v == C.SUPPORTED for v in verdicts):
        return C.SUPPORTED
    return C.NOT_SUPPORTED if all(v == C.NOT_SUPPORTED for v in verdicts) else C.INCONCLUSIVE


def brief(e) -> str:
    """'value [lo, hi]' of an Estimate or a Decision, three significant digits."""
    lo, hi = (e.lo, e.hi) if isinstance(e, S.Estimate) else e.interval
    return f"{C.fmt(e.value if isinstance(e, S.Estimate) else e.estimate)} [{C.fmt(lo)}, {C.fmt(hi)}]"


save = C.save  # the at-init experiments' name for it


def fit_decay(norms, **kw):
    """``gp.fit_decay_rate`` under standard dtype promotion: its bool mask × float product fails under
    ``jax_numpy_dtype_promotion="strict"`` (reported to the library's owner); results as numpy arrays."""
    with jax.numpy_dtype_promotion("standard"):
        return jax.tree.map(np.asarray, gp.fit_decay_rate(norms, **kw))


# ----------------------------------------------------------------------------- C10: highway-only cells

HIGHWAY_ONLY = ("mingru", "minlstm", "lru", "rglru", "mlstm", "s6")  # registry names; C10's two halves
# Options as these cells are trained in practice, in both halves: recurrentgemma trains RG-LRU with a bounded
# derivative of √(1 − a²) (the exact one diverged on copy); xLSTM's mLSTM layers use 4 heads.
OPTIONS = {"rglru": (("sqrt_max_gradient", 1000.0),), "mlstm": (("num_heads", 4),)}


def width_multiple(name: str) -> int:
    """Widths a cell accepts are multiples of this (its number of heads)."""
    return dict(OPTIONS.get(name, ())).get("num_heads", 1)


def n_params(cell, n_i: int) -> int:
    return sum(x.size for x in jax.tree.leaves(jax.eval_shape(lambda: cell.init(jax.random.key(0), n_i))))


def matched(make, target: int, n_i: int, multiple: int = 1, h_max: int = 1024):
    """``make(H)`` at the H (a multiple of ``multiple``) whose parameter count is closest to ``target``
    (counts grow with H)."""
    lo, hi = 1, h_max // multiple
    while hi - lo > 1:  # the smallest m with count(m · multiple) >= target lies in (lo, hi]
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if n_params(make(mid * multiple), n_i) < target else (lo, mid)
    return min((make(m * multiple) for m in (lo, hi)), key=lambda c: abs(n_params(c, n_i) - target))


def long_range(cell, params, xs, loss, max_d: int) -> dict:
    """What C10 reads from one batch, for a ``loss(hs)`` on the **last step only**:

    - share ‖G_{d≥D}‖ / ‖g‖ and norm ‖G_{d≥D}‖: for a last-step loss d = T−1−t, so G_{d≥D} is the sum
      of ``by_step`` over t ≤ T−1−D (one reverse pass; a distance split would carry D adjoints);
    - layer_share: each layer's part of ‖G_{d≥D}‖ (one entry for a single cell), and layer_time:
      ‖∂L/∂s_t‖ per layer and step (the time × depth map);
    - log_gap, for a real elementwise highway z_t = a_t ⊙ z_{t-1} + b_t (a cell whose ``coefficients(θ, x)``
      gives a real a_t shaped like its edge and ``mul`` acting elementwise: minGRU, minLSTM, RG-LRU, S6; NaN
      for the LRU, whose real pairs multiply as complex numbers): max |Δ log| between
      the highway adjoint ‖λ_t‖ and its prediction from Σ log a_t (``analysis.highway_log_prediction``),
      exact for a last-step loss since no other edge feeds λ.
    """
    n_t = xs.shape[-2]
    d = gp.decompose(cell, params, xs, loss, max_hops=0, parts=("step", "state"))
    far = lambda by_step: jnp.linalg.norm(A.by_distance_last_step(by_step)[max_d:].sum(0))  # ‖G_{d≥D}‖
    out = {"norm": far(d.by_step)}
    out["share"] = out["norm"] / jnp.linalg.norm(A.flat_lead(d.total, 0))
    layers = lambda tree: tree if isinstance(params, tuple) else (tree,)  # a stack's parts are per layer
    out["layer_share"] = jnp.stack([far(p) for p in layers(d.by_step)]) / out["norm"]
    out["layer_time"] = jnp.stack(
        [jnp.linalg.norm(A.flat_lead(s).reshape(n_t, -1), axis=-1) for s in layers(d.state_grads)]
    )
    if hasattr(cell, "coefficients") and not hasattr(cell, "stabiliser"):  # mLSTM's need its stabiliser
        lam = cell.read(jax.tree.map(lambda v: v[:, 0], d.state_grads))["highway"]  # [T, B, ...]
        a = jax.vmap(jax.vmap(lambda x: cell.coefficients(params, x)[0]["highway"]))(jnp.swapaxes(xs, 0, 1))
        if isinstance(a, jax.Array) and a.shape == lam.shape and not jnp.iscomplexobj(a):
            z = jnp.linspace(1.0, 2.0, lam[0, 0].size, dtype=lam.dtype).reshape(lam[0, 0].shape)
            elementwise = jnp.all(cell.mul({"highway": a[0, 0]}, {"highway": z})["highway"] == a[0, 0] * z)
            flat = lambda v: v.reshape(n_t, v.shape[1], -1).astype(jnp.float64)  # [T, B, state]
            lam, a = flat(lam), flat(a)
            pred = A.highway_log_prediction(jnp.log(a), lam[n_t - 2])
            meas_n, pred_n = jnp.linalg.norm(lam[: n_t - 1], axis=-1), jnp.linalg.norm(pred, axis=-1)
            gap = A.max_log_gap(meas_n, pred_n, A.underflow_floor(xs.dtype))
            out["log_gap"] = jnp.where(elementwise, gap, jnp.nan)  # NaN: a_t acts as pairs (the LRU's complex λ)
    return out
