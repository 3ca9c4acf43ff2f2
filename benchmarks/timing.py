"""Shared benchmark plumbing: interleaved timing, ratios, environment, JSON + markdown output.

Timing: every case is called once to compile and ``warmup`` more times, then the cases
are run in interleaved rounds (A, B, C, A, B, C, ...) so that a change in machine load
hits all of them alike. Each call ends with ``block_until_ready`` (torch cases return
None and finish synchronously). A case's figure is the median over rounds, with the
interquartile range; a ratio is the median over rounds of (case time / reference time
in the same round), with its own IQR.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np

DEFAULT_OUT = Path("results")


def parse_args(
    name: str, description: str, argv: Sequence[str] | None = None, extra: Callable | None = None
) -> argparse.Namespace:
    """--quick, --out, --repeats, plus whatever ``extra(parser)`` adds."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results root (writes OUT/benchmarks/)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per case (default per benchmark)")
    if extra is not None:
        extra(parser)
    return parser.parse_args(argv)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """The device, package versions and machine load, recorded with every result."""
    dev = jax.devices()[0]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "backend": jax.default_backend(),
        "device": f"{dev.platform}: {dev.device_kind}",
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "python": sys.version.split()[0],
        "versions": {p: _version(p) for p in ("jax", "jaxlib", "flax", "torch", "numpy", "gradpaths")},
        "x64": bool(jax.config.read("jax_enable_x64")),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_avg_1_5_15": list(load) if load else None,
    }


def _block(out: Any) -> None:
    if out is not None:
        jax.block_until_ready(out)


def stats(values: np.ndarray) -> dict[str, float]:
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return {
        "median": float(med),
        "q1": float(q1),
        "q3": float(q3),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def time_cases(
    cases: Mapping[str, Callable[[], Any]],
    repeats: int = 10,
    warmup: int = 1,
    budget_s: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Times zero-argument callables in interleaved rounds.

    Args:
      cases: name -> callable; a JAX result is blocked on, None means already finished.
      repeats: timed rounds (at least 3 are run, however long they take).
      warmup: untimed calls per case after the first (compiling) call.
      budget_s: stop adding rounds once this many seconds of timed rounds have passed.

    Returns:
      name -> {"ms": stats, "rounds_ms": per-round times, "first_call_s": compile + run}
      where stats = {median, q1, q3, min, max}.
    """
    first = {}
    for name, fn in cases.items():
        t0 = time.perf_counter()
        _block(fn())
        first[name] = time.perf_counter() - t0
        for _ in range(warmup):
            _block(fn())
    times: dict[str, list[float]] = {name: [] for name in cases}
    start = time.perf_counter()
    for r in range(max(repeats, 3)):
        if r >= 3 and budget_s is not None and time.perf_counter() - start > budget_s:
            break
        order = list(cases)
        order = order[r % len(order) :] + order[: r % len(order)]
        for name in order:
            t0 = time.perf_counter()
            _block(cases[name]())
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {
        name: {"ms": stats(np.asarray(ts)), "rounds_ms": ts, "first_call_s": first[name]} for name, ts in times.items()
    }


def ratio(timed: Mapping[str, Mapping[str, Any]], case: str, reference: str) -> dict[str, float]:
    """Stats of the per-round ratio case / reference (both timed in the same ``time_cases`` run)."""
    for name in (case, reference):
        if name not in timed:
            raise ValueError(f"{name!r} was not timed; timed cases are {list(timed)}")
    return stats(np.asarray(timed[case]["rounds_ms"]) / np.asarray(timed[reference]["rounds_ms"]))


def goal(ratio: float, limit: float) -> str:
    """ "MET" when a measured cost ratio is at most its goal, else "NOT MET"."""
    if not np.isfinite(ratio) or not np.isfinite(limit):
        raise ValueError(f"goal needs finite numbers, got ratio={ratio}, limit={limit}")
    return "MET" if ratio <= limit else "NOT MET"


def mark_quick(result: dict[str, Any]) -> dict[str, Any]:
    """Labels every verdict of a --quick run: tiny sizes measure nothing about the goals."""
    for g in result.get("goals", []):
        g["verdict"] = f"{g['verdict']} (--quick: not a measurement)"
    result["quick"] = True
    return result


def fmt_ms(stats: Mapping[str, float]) -> str:
    return f"{stats['median']:.2f} [{stats['q1']:.2f}, {stats['q3']:.2f}]"


def fmt_ratio(stats: Mapping[str, float] | None) -> str:
    if stats is None:
        return "-"
    return f"{stats['median']:.2f}× [{stats['q1']:.2f}, {stats['q3']:.2f}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write(out_root: Path, name: str, title: str, record: dict[str, Any], body_md: str) -> Path:
    """Writes OUT/benchmarks/<name>.json and <name>.md, prints the markdown, returns the md path."""
    out_dir = Path(out_root) / "benchmarks"
    out_dir.mkdir(parents=True, exist_ok=True)
    env = record.setdefault("environment", environment())
    head = (
        f"## {title}\n\n{env['date_utc']} · {env['device']} ×{env['device_count']} ({env['processor']}, "
        f"{env['cpu_count']} cores) · "
        f"jax {env['versions']['jax']} · load {env['load_avg_1_5_15']}\n\n"
        "Times in ms: median [IQR] over interleaved rounds. Ratios: median [IQR] of per-round ratios.\n\n"
    )
    md = head + body_md + "\n"
    tmp = out_dir / f".{name}.json.tmp"
    tmp.write_text(json.dumps(record, indent=1, default=float))
    tmp.replace(out_dir / f"{name}.json")
    (out_dir / f"{name}.md").write_text(md)
    print(md, flush=True)
    return out_dir / f"{name}.md"


def lstm_problem(batch: int, hidden: int, inputs: int, steps: int, seed: int = 0, dtype=None):
    """The benchmark problem: gp.lstm(hidden), its params and xs [batch, steps, inputs] ~ N(0, 1)."""
    import jax.numpy as jnp

    import gradpaths as gp

    dtype = jnp.float32 if dtype is None else dtype
    cell = gp.lstm(hidden)
    params = cell.init(jax.random.key(seed), inputs, dtype)
    xs = jax.random.normal(jax.random.key(seed + 1), (batch, steps, inputs), dtype)
    return cell, params, xs


def mse(hs):
    """The benchmark loss: mean of h_t² over every step, example and unit."""
    return (hs**2).mean()


def rel_error(a, b) -> float:
    """‖a - b‖ / ‖b‖ over all leaves of two pytrees."""
    import jax.numpy as jnp

    flat = lambda t: jnp.concatenate(
        [jnp.ravel(x).astype(jnp.float64 if jax.config.read("jax_enable_x64") else x.dtype) for x in jax.tree.leaves(t)]
    )
    return float(jnp.linalg.norm(flat(a) - flat(b)) / jnp.linalg.norm(flat(b)))


def goals_table(goals: Sequence[Mapping[str, Any]]) -> str:
    """The goals rows (case, reference, ratio, goal, verdict) as a markdown table."""
    return markdown_table(
        ["case", "against", "ratio", "goal", "verdict"],
        [[g["case"], g["reference"], f"{g['ratio']:.2f}×", f"≤ {g['goal']}×", g["verdict"]] for g in goals],
    )


def run_main(module, title: str, argv: Sequence[str] | None) -> dict[str, Any]:
    """The common ``main`` of a benchmark module with QUICK/FULL configs, ``run`` and ``markdown``."""
    args = parse_args(module.NAME, module.__doc__.splitlines()[0], argv)
    config = dict(module.QUICK if args.quick else module.FULL)
    result = module.run(config, args.repeats or config["repeats"])
    if args.quick:
        mark_quick(result)
    write(args.out, module.NAME, title, result, module.markdown(result))
    return result
