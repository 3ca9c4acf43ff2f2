"""Peak memory: XLA's compiled memory analysis, and the measured peak RSS of a real run.

For each case, a child process builds the problem, compiles it (``jit(f).lower().compile()``
gives ``memory_analysis()``: arguments, outputs and temporaries in bytes) and runs it
once; ``resource.getrusage`` gives the child's peak resident set size (the whole
process: Python, JAX runtime and compiler included; the size right after import is
recorded as the baseline). Cases: a plain gradient, decompose with hops K = 1 and the
total alone, at a moderate T and at the long-sequence point T = 10,000, H = 128, B = 8;
and decompose K = 1 with the forward pass rematerialised in √T chunks (``chunk="sqrt"``)
at T = 100,000, H = 128, B = 8. Goal: that last one fits in 4 GiB (peak RSS).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence

import jax

import gradpaths as gp
from benchmarks import timing

NAME = "memory"
FULL = {
    "points": [
        {"batch": 32, "hidden": 128, "inputs": 8, "steps": 1000},
        {"batch": 8, "hidden": 128, "inputs": 8, "steps": 10_000},
        {"batch": 8, "hidden": 128, "inputs": 8, "steps": 100_000, "cases": ["decompose hops K=1 (√T chunks)"]},
    ],
}
QUICK = {"points": [{"batch": 2, "hidden": 8, "inputs": 3, "steps": 50}]}
LONG_CASE, LONG_GOAL_MIB = "decompose hops K=1 (√T chunks)", 4096
CASES = {
    "jax.grad (custom VJP)": {"kind": "grad", "backward": "custom"},
    "jax.grad (autodiff scan)": {"kind": "grad", "backward": "autodiff"},
    "decompose hops K=1": {"kind": "decompose", "max_hops": 1, "parts": ("hops",)},
    "decompose hops K=9": {"kind": "decompose", "max_hops": 9, "parts": ("hops",)},
    "decompose total only": {"kind": "decompose", "max_hops": 1, "parts": ()},
    "decompose hops K=1 (√T chunks)": {"kind": "decompose", "max_hops": 1, "parts": ("hops",), "chunk": "sqrt"},
}
MIB = 2**20


def _maxrss_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MIB


def measure(point: dict, case: dict) -> dict:
    """Compiles and runs one case in this process; returns bytes from XLA and the peak RSS."""
    base_rss = _maxrss_mib()
    cell, params, xs = timing.lstm_problem(point["batch"], point["hidden"], point["inputs"], point["steps"])
    if case["kind"] == "grad":
        f = jax.grad(lambda p: timing.mse(gp.unroll(cell, p, xs, backward=case["backward"])))
    else:
        kw = {"max_hops": case["max_hops"], "parts": case["parts"], "chunk": case.get("chunk")}
        f = lambda p: gp.decompose(cell, p, xs, timing.mse, **kw).total
    compiled = jax.jit(f).lower(params).compile()
    mem = compiled.memory_analysis()
    xla = {
        k: int(getattr(mem, k, 0) or 0)
        for k in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes")
    }
    compile_rss = _maxrss_mib()
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(params))
    run_s = time.perf_counter() - t0
    return {
        "xla_bytes": xla,
        "xla_total_mib": (xla["argument_size_in_bytes"] + xla["output_size_in_bytes"] + xla["temp_size_in_bytes"])
        / MIB,
        "rss_after_import_mib": base_rss,
        "rss_after_compile_mib": compile_rss,
        "peak_rss_mib": _maxrss_mib(),
        "run_s": run_s,
    }


def run(config: dict) -> dict:
    rows, goals = [], []
    for point in config["points"]:
        for name in point.get("cases", CASES):
            cmd = [sys.executable, "-m", "benchmarks.memory", "--worker", json.dumps({"point": point, "case": name})]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"point": point, "case": name, **res})
            print(
                f"T={point['steps']} {name}: XLA {res['xla_total_mib']:.0f} MiB, "
                f"peak RSS {res['peak_rss_mib']:.0f} MiB, run {res['run_s']:.2f} s",
                flush=True,
            )
            if name == LONG_CASE and point["steps"] >= 100_000:
                r = res["peak_rss_mib"] / LONG_GOAL_MIB
                goals.append({"case": f"{name}, T={point['steps']}: peak RSS", "reference": "4 GiB", "ratio": r,
                              "goal": 1.0, "verdict": timing.goal(r, 1.0)})  # fmt: skip
    return {"config": config, "rows": rows, "goals": goals}


def markdown(result: dict) -> str:
    body = (
        "XLA = arguments + outputs + temporaries of the compiled function; peak RSS = the child process's "
        "maximum resident set (includes the ~import baseline shown).\n\n"
    )
    body += timing.markdown_table(
        ["B, H, T", "case", "XLA MiB", "of which temporaries MiB", "peak RSS MiB", "RSS after import MiB", "run s"],
        [
            [
                f"{r['point']['batch']}, {r['point']['hidden']}, {r['point']['steps']}",
                r["case"],
                f"{r['xla_total_mib']:.0f}",
                f"{r['xla_bytes']['temp_size_in_bytes'] / MIB:.0f}",
                f"{r['peak_rss_mib']:.0f}",
                f"{r['rss_after_import_mib']:.0f}",
                f"{r['run_s']:.2f}",
            ]
            for r in result["rows"]
        ],
    )
    if result.get("goals"):
        body += "\n\nGoals:\n\n" + timing.goals_table(result["goals"])
    return body


def main(argv: Sequence[str] | None = None) -> dict:
    worker = lambda p: p.add_argument("--worker", default=None, help="internal: one case as JSON")
    args = timing.parse_args(NAME, __doc__.splitlines()[0], argv, extra=worker)
    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(measure(job["point"], CASES[job["case"]])))
        return {}
    config = dict(QUICK if args.quick else FULL)
    result = run(config)
    timing.write(args.out, NAME, "Peak memory", result, markdown(result))
    return result


if __name__ == "__main__":
    main()
