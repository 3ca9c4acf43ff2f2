"""C1: the RNN gradient is exactly the sum of per-step (and per-distance, per-hop-class) parts.

For each cell, dtype and loss, every part of ``gp.decompose`` is summed over its
leading axes and compared with ``jax.grad``: relative error ‖Σ parts − g‖ / ‖g‖.
Criterion (CLAIMS.md): ≤ 1e-12 in float64 and ≤ 1e-5 in float32, for rnn, lstm and gru.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import gradpaths as gp
from experiments import _common as C
from experiments import _probe as P

CLAIM, NAME = "C1", "c1_exact"
TITLE = "C1: the total gradient is exactly the sum of per-step gradients"
TOL = {"float64": 1e-12, "float32": 1e-5}
CELLS = {
    "rnn": gp.rnn,
    "lstm": gp.lstm,
    "lstm (no forget gate)": lambda h: gp.lstm(h, forget_gate=False),
    "gru": gp.gru,
    "mgu": gp.mgu,
}
LOSSES = ("last step", "every step", "nonlinear")
PARTS = ("step", "distance", "hops", "distance_hops")


def loss_fn(hs, w):
    """w mixes three losses: h_T·1, Σ_t h_t·1, and Σ_t sin(h_t)² (all summed over the batch)."""
    return w[0] * hs[..., -1, :].sum() + w[1] * hs.sum() + w[2] * jnp.sum(jnp.sin(3 * hs) ** 2)


def rel_err(parts, ref) -> jax.Array:
    flat = lambda t: jnp.concatenate([x.ravel() for x in jax.tree.leaves(t)])
    return jnp.linalg.norm(flat(parts) - flat(ref)) / jnp.linalg.norm(flat(ref))


def errors(cell, params, xs, w, max_hops, parts=PARTS):
    """Relative error of each part's sum against jax.grad of the plain-autodiff scan."""
    ref = jax.grad(lambda p: loss_fn(gp.unroll(cell, p, xs, backward="autodiff"), w))(params)
    d = gp.decompose(cell, params, xs, lambda hs: loss_fn(hs, w), max_hops=max_hops, parts=parts)
    total = lambda t, axes: jax.tree.map(lambda v: v.sum(axes), t)
    sums = {
        "total": lambda: d.total,
        "step": lambda: total(d.by_step, 0),
        "distance": lambda: total(d.by_distance, 0),
        "hops": lambda: total(d.by_hops, 0),
        "distance_hops": lambda: total(d.by_distance_hops, (0, 1)),
    }
    return {k: rel_err(sums[k](), ref) for k in ("total", *parts)}


def verdict(max_err: dict[str, float]) -> str:
    """SUPPORTED iff the worst error of each dtype is within its tolerance."""
    missing = set(TOL) - set(max_err)
    if missing:
        raise ValueError(f"verdict needs errors for {sorted(TOL)}, missing {sorted(missing)}")
    return C.SUPPORTED if all(max_err[k] <= TOL[k] for k in TOL) else C.NOT_SUPPORTED


def run(args: C.Args) -> C.Outcome:
    n_t, n_h, n_b = args.pick((12, 6, 2), (60, 24, 4), (200, 64, 8))
    n_i, max_hops = 3, 4
    key = jax.random.key(0)
    names = args.pick(("rnn", "lstm", "gru"), tuple(CELLS), tuple(CELLS))  # quick: the cells the criterion names
    parts = args.pick(PARTS[:3], PARTS, PARTS)  # quick skips the joint distance × hops table
    table = []
    for cname in names:
        make = CELLS[cname]
        cell = make(n_h)
        for dtype in (jnp.float32, jnp.float64):
            params = cell.init(jax.random.fold_in(key, 1), n_i, dtype)
            xs = jax.random.normal(jax.random.fold_in(key, 2), (n_b, n_t, n_i), dtype)
            f = jax.jit(lambda p, x, w, cell=cell: errors(cell, p, x, w, max_hops, parts))
            for li, lname in enumerate(LOSSES):
                w = jnp.zeros(3, dtype).at[li].set(1.0)
                errs = {k: float(v) for k, v in f(params, xs, w).items()}
                table.append({"cell": cname, "dtype": jnp.dtype(dtype).name, "loss": lname, **errs})
        C.progress(f"  C1 {cname}: done")
    worst = {dt: max(max(r[p] for p in ("total", *parts)) for r in table if r["dtype"] == dt) for dt in TOL}
    v = verdict(worst)
    n_case = {dt: sum(r["dtype"] == dt for r in table) * (1 + len(parts)) for dt in TOL}
    headline = (
        f"max rel. error {C.fmt(worst['float64'])} (float64, n={n_case['float64']} sums), {C.fmt(worst['float32'])} "
        f"(float32, n={n_case['float32']}); an exact bound over every case, so no sampling interval"
    )
    fig = _figure(table, names, worst, parts)
    rows = "\n".join(
        f"| {r['cell']} | {r['dtype']} | {r['loss']} | " + " | ".join(f"{r[p]:.1e}" for p in ("total", *parts)) + " |"
        for r in table
    )
    summary = (
        f"Sequences T={n_t}, H={n_h}, batch {n_b}; max_hops={max_hops}. Each cell: relative error "
        f"‖Σ parts − jax.grad‖/‖jax.grad‖. Tolerances: {TOL}.\n\n"
        "| cell | dtype | loss | total | "
        + " | ".join(f"Σ {p}" for p in parts)
        + " |\n"
        + "|---" * (4 + len(parts))
        + "|\n"
        + rows
    )
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c1_errors.png")
    config = {"cells": names, "parts": parts, "T": n_t, "H": n_h, "B": n_b, "I": n_i, "max_hops": max_hops}
    data = {"errors": table, "worst": worst, "tolerance": TOL}
    return P.save(args, NAME, outcome, summary, fig, config, data)


def _figure(table, cells, worst, parts):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    for j, dt in enumerate(("float32", "float64")):
        per_cell = [
            max(max(r[p] for p in ("total", *parts)) for r in table if r["cell"] == c and r["dtype"] == dt)
            for c in cells
        ]
        ax.bar(np.arange(len(cells)) + 0.38 * (j - 0.5), np.maximum(per_cell, 1e-18), 0.38, label=f"{dt} (worst part)")
        ax.axhline(TOL[dt], color=f"C{j}", ls="--", lw=1, label=f"{dt} tolerance {TOL[dt]:g}")
    ax.set_yscale("log")
    ax.set_xticks(range(len(cells)), cells)
    ax.set_ylabel("relative error ‖Σ parts − grad‖ / ‖grad‖")
    within = [dt for dt in TOL if worst[dt] <= TOL[dt]]
    found = (
        "every part sums to jax.grad within tolerance"
        if len(within) == len(TOL)
        else (f"tolerance missed in {', '.join(dt for dt in TOL if dt not in within)}")
    )
    ax.set_title(f"C1: {found} (worst {worst['float64']:.1e} f64, {worst['float32']:.1e} f32)")
    ax.legend(fontsize=7, ncol=2, loc="center right")
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
