"""Parallel (associative-scan) against sequential (lax.scan) unrolls of highway-only cells.

At each T: ``jax.grad`` of mse(hs) through ``gp.unroll`` (sequential) and through
``gradpaths.parallel.parallel_unroll`` (O(log T) depth), and the forward passes alone,
timed side by side; the ratio is parallel ÷ sequential in the same rounds (below 1: the
parallel form wins). Then ``by_distance`` with ``max_distance=D``: ``gp.decompose``
against ``parallel_decompose`` (depth D instead of T). The same script runs unchanged on a GPU.

The mLSTM (a max-plus scan of its stabiliser, then the linear scan of its matrix memory)
runs with ``cell_options`` (heads of Dh = H / num_heads, so C is NH·Dh² per example) and
stops at ``max_steps``, where its per-step memory would outgrow a laptop.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp

import gradpaths as gp
from benchmarks import timing
from gradpaths.cells import REGISTRY
from gradpaths.parallel import parallel_decompose, parallel_unroll

NAME = "parallel"
FULL = {
    "cells": ("mingru", "lru", "mlstm"),
    "cell_options": {"mlstm": {"num_heads": 8}},
    "max_steps": {"mlstm": 1000},
    "batch": 32,
    "hidden": 128,
    "inputs": 8,
    "steps": (100, 1000, 10000),
    "distance": {"cell": "mingru", "steps": 1000, "max_distance": 32},
    "repeats": 5,
    "budget_s": 20.0,
}
QUICK = {
    "cells": ("mingru", "lru", "mlstm"),
    "cell_options": {"mlstm": {"num_heads": 2}},
    "max_steps": {},
    "batch": 2,
    "hidden": 8,
    "inputs": 3,
    "steps": (10, 20),
    "distance": {"cell": "mingru", "steps": 20, "max_distance": 4},
    "repeats": 3,
    "budget_s": 5.0,
}
SEQ, PAR = "sequential", "parallel"


def point(
    name: str, batch: int, hidden: int, inputs: int, steps: int, repeats: int, budget_s: float, options: dict
) -> dict:
    cell = REGISTRY[name](hidden, **options)
    params = cell.init(jax.random.key(0), inputs, jnp.float32)
    xs = jax.random.normal(jax.random.key(1), (batch, steps, inputs), jnp.float32)
    runs = {SEQ: lambda p: gp.unroll(cell, p, xs), PAR: lambda p: parallel_unroll(cell, p, xs)}
    fns = {}
    for kind, run in runs.items():
        fns[f"{kind} fwd"] = jax.jit(run)
        fns[f"{kind} fwd+bwd"] = jax.jit(jax.grad(lambda p, run=run: timing.mse(run(p))))
    err = timing.rel_error(fns[f"{PAR} fwd"](params), fns[f"{SEQ} fwd"](params))
    timed = timing.time_cases({k: (lambda f=f: f(params)) for k, f in fns.items()}, repeats, budget_s=budget_s)
    ratios = {
        what: timing.ratio(timed, f"{PAR} {what}", f"{SEQ} {what}")  # parallel ÷ sequential
        for what in ("fwd", "fwd+bwd")
    }
    return {"ms": {k: t["ms"] for k, t in timed.items()}, "parallel_over_sequential": ratios, "rel_error_fwd": err}


def distance_point(config: dict, repeats: int) -> dict:
    """by_distance with max_distance=D: gp.decompose (reverse lax.scan) against parallel_decompose."""
    dc = config["distance"]
    cell = REGISTRY[dc["cell"]](config["hidden"])
    params = cell.init(jax.random.key(0), config["inputs"], jnp.float32)
    xs = jax.random.normal(jax.random.key(1), (config["batch"], dc["steps"], config["inputs"]), jnp.float32)
    kw = dict(parts=("distance",), max_distance=dc["max_distance"])
    fns = {
        "grad": jax.jit(jax.grad(lambda p: timing.mse(gp.unroll(cell, p, xs)))),
        SEQ: jax.jit(lambda p: gp.decompose(cell, p, xs, timing.mse, **kw).by_distance),
        PAR: jax.jit(lambda p: parallel_decompose(cell, p, xs, timing.mse, **kw).by_distance),
    }
    err = timing.rel_error(fns[PAR](params), fns[SEQ](params))
    timed = timing.time_cases(
        {k: (lambda f=f: f(params)) for k, f in fns.items()}, repeats, budget_s=config["budget_s"]
    )
    return {
        **dc,
        "ms": {k: t["ms"] for k, t in timed.items()},
        "parallel_over_sequential": timing.ratio(timed, PAR, SEQ),
        "sequential_over_grad": timing.ratio(timed, SEQ, "grad"),
        "parallel_over_grad": timing.ratio(timed, PAR, "grad"),
        "rel_error": err,
    }


def run(config: dict, repeats: int) -> dict:
    rows = []
    for name in config["cells"]:
        options = config.get("cell_options", {}).get(name, {})
        for steps in config["steps"]:
            if steps > config.get("max_steps", {}).get(name, steps):
                continue
            size = (config["batch"], config["hidden"], config["inputs"], steps)
            res = point(name, *size, repeats, config["budget_s"], options)
            rows.append({"cell": name, "steps": steps, "options": options, **res})
            r = res["parallel_over_sequential"]
            print(
                f"{name} T={steps}: parallel ÷ sequential fwd {r['fwd']['median']:.2f}×, "
                f"fwd+bwd {r['fwd+bwd']['median']:.2f}×",
                flush=True,
            )
    dist = distance_point(config, repeats)
    print(
        f"by_distance D={dist['max_distance']}: parallel ÷ sequential {dist['parallel_over_sequential']['median']:.2f}×"
    )
    return {"config": config, "rows": rows, "distance": dist}


def markdown(result: dict) -> str:
    c = result["config"]
    body = (
        f"Cells {', '.join(c['cells'])}: B={c['batch']}, H={c['hidden']}, I={c['inputs']}, float32, loss mse(hs)"
        + "".join(
            f"; {name} with " + ", ".join(f"{k}={v}" for k, v in opts.items())
            for name, opts in c.get("cell_options", {}).items()
        )
        + ". Ratio = parallel ÷ sequential (below 1: the associative scan wins).\n\n"
    )
    table = [
        [
            r["cell"],
            r["steps"],
            timing.fmt_ms(r["ms"][f"{SEQ} fwd"]),
            timing.fmt_ms(r["ms"][f"{PAR} fwd"]),
            timing.fmt_ratio(r["parallel_over_sequential"]["fwd"]),
            timing.fmt_ms(r["ms"][f"{SEQ} fwd+bwd"]),
            timing.fmt_ms(r["ms"][f"{PAR} fwd+bwd"]),
            timing.fmt_ratio(r["parallel_over_sequential"]["fwd+bwd"]),
            f"{r['rel_error_fwd']:.1e}",
        ]
        for r in result["rows"]
    ]
    header = [
        "cell",
        "T",
        "seq fwd ms",
        "par fwd ms",
        "fwd ratio",
        "seq fwd+bwd ms",
        "par fwd+bwd ms",
        "ratio",
        "rel err",
    ]
    d = result["distance"]
    dist = (
        f"\n\n`by_distance` with max_distance={d['max_distance']}, {d['cell']}, T={d['steps']}: "
        f"gp.decompose {timing.fmt_ms(d['ms'][SEQ])} ms ({timing.fmt_ratio(d['sequential_over_grad'])} a plain grad), "
        f"parallel_decompose {timing.fmt_ms(d['ms'][PAR])} ms ({timing.fmt_ratio(d['parallel_over_grad'])}); "
        f"parallel ÷ sequential {timing.fmt_ratio(d['parallel_over_sequential'])}, rel err {d['rel_error']:.1e}."
    )
    return body + timing.markdown_table(header, table) + dist


def main(argv: Sequence[str] | None = None) -> dict:
    return timing.run_main(sys.modules[__name__], "Parallel scans against sequential", argv)


if __name__ == "__main__":
    main()
