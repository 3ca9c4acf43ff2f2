"""Runs every claim experiment and writes DIR/REPORT.md.

    python -m experiments [--quick | --scale full] [--seeds N] [--out DIR] [--float64] [--only C1,C4] [--fresh]
                          [--workers N]

Experiments run in ``--workers`` processes (default: one per core), each pinned to one core
with one XLA host device and taking the next group of experiments from a queue, heaviest
first; a group holds the experiments that share a cached computation or read another's
result, in order. Compiles are single-threaded, so one process on every core leaves a core
idle while it compiles; two processes with every core each oversubscribe them (measured:
C8 took 2.6× its solo time beside C5). ``--quick`` also compiles as the
tests do (``QUICK_FLAGS``: no backend optimisation, XLA:CPU's older fusion emitters; 2-4×
faster compiles; float32 results may differ from the default codegen in the last bits).

Finished experiments (a results.json at the same scale, seeds and dtype, written by the
same code: ``_common.code_version``, a hash of the experiment module, the shared
experiment modules and the gradpaths sources) are reused, so an interrupted run
resumes; results that older code wrote are recomputed; ``--fresh`` recomputes everything.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

from experiments import _common as C

# (claim, module); several modules may share a claim.
REGISTRY = (
    ("C1", "c1_exact"),
    ("C2", "c2_vanishing"),
    ("C3", "c3_highway"),
    ("C4", "c4_cec"),
    ("C5", "c5_paths"),
    ("C6", "c6_explosion"),
    ("C6", "c6_clipping"),
    ("C7", "c7_forget_bias"),
    ("C7", "c7_forget_training"),
    ("C7", "c7_selective"),
    ("C8", "c8_lag"),
    ("C9", "c9_activations"),
    ("C9", "c9_irnn"),
    ("C10", "c10_modern"),
    ("C10", "c10_training"),
    ("", "hdetach"),
    ("", "paths_training"),
    ("", "distance_hops_map"),
)

# Experiments that share a cached computation (the LSTM forget-bias sweep; C8's adding points)
# or read another's result (c6_clipping shows c6_explosion's): one process runs each group, in order.
GROUPS = (("c5_paths", "c7_forget_bias", "distance_hops_map"), ("c8_lag", "c9_irnn"), ("c6_explosion", "c6_clipping"))
# Started first (the slowest at default scale on one core, 2026-12-03: c10_training 551 s, c8_lag 255 s, hdetach
# 124 s, c10_modern 122 s; c5_paths fell from 354 s to 29 s with the step × hop table); the rest in REGISTRY order.
HEAVY = ("c10_training", "c8_lag", "c10_modern", "hdetach")
# --quick is compile-bound: the tests' fast-compile flags (README, "Compile time on CPU"); a flag set in XLA_FLAGS wins
QUICK_FLAGS = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
)

STATEMENTS = {
    "C1": "The total gradient is the sum of per-step gradients, g = Σ_t g_t.",
    "C2": "The total RNN gradient does not vanish; its long-range part does.",
    "C3": "The LSTM cell-state path is elementwise and stable; the other paths multiply by W_h like an RNN.",
    "C4": "Without a forget gate, dL/dc passes back unchanged along the highway (the CEC).",
    "C5": "One non-vanishing path (the highway) keeps the long-range gradient alive.",
    "C6": "LSTMs explode less often than RNNs; clipping handles explosion.",
    "C7": "f ≈ 1 keeps long-range gradients; f ≈ 0 cuts them on purpose; in between it only helps.",
    "C8": "Gating plus a kept cell state lets LSTM/GRU solve lags an RNN cannot.",
    "C9": "Activation derivatives set the decay rate: sigmoid < tanh < relu; the IRNN trains where tanh fails.",
    "C10": "Highway-only cells (minGRU, minLSTM, LRU, RG-LRU, mLSTM, S6) keep long-range gradients that an LSTM "
    "keeps only at large forget bias.",
}


def available() -> list[tuple[str, object]]:
    """The registered modules that exist in this checkout."""
    out = []
    for claim, name in REGISTRY:
        try:
            out.append((claim, importlib.import_module(f"experiments.{name}")))
        except ModuleNotFoundError as e:
            if e.name != f"experiments.{name}":
                raise
    return out


def reuse(args: C.Args, name: str) -> C.Outcome | None:
    """The outcome of a finished run of ``name`` at the same settings, if there is one."""
    path = args.dir(name) / "results.json"
    if not path.exists():
        return None
    r = json.loads(path.read_text())
    if (
        r.get("code_version") != C.code_version(name)
        or r.get("scale") != args.scale
        or r.get("float64") != args.float64
        or (args.seeds and r.get("seeds") != args.seeds)
    ):
        return None
    reps = tuple(C.Reproduction(**x) for x in r.get("reproductions", []))
    fig = next((p.name for p in sorted(path.parent.glob("*.png"))), "")
    return C.Outcome(r["claim"], name, r["verdict"], r["headline"], r.get("figure", fig), reps)


def report(args: C.Args, outcomes: list[C.Outcome], failures: dict[str, str], wall: float) -> str:
    rows = []
    for claim, statement in STATEMENTS.items():
        mine = [o for o in outcomes if o.claim == claim]
        if not mine:
            failed = [n for c, n in REGISTRY if c == claim and n in failures]
            status = f"FAILED ({', '.join(failed)})" if failed else "not run"
            rows.append(f"| {claim} | {statement} | — | {status} | — |")
            continue
        verdict = C.combine([o.verdict for o in mine])
        measured = "<br>".join(f"{o.name}: {o.verdict} — {o.headline}" if len(mine) > 1 else o.headline for o in mine)
        measured = measured.replace("|", "\\|")  # a headline's pipes must not split the table row
        figs = " ".join(f"[{o.name}]({o.name}/{o.figure})" for o in mine if o.figure)
        rows.append(f"| {claim} | {statement} | {measured} | **{verdict}** | {figs} |")
    extras = [o for o in outcomes if not o.claim]
    cell = lambda text: text.replace("|", "\\|")
    extra_rows = "\n".join(
        f"| {o.name} | {cell(o.headline)} | {o.verdict} | [{o.figure}]({o.name}/{o.figure}) |" for o in extras
    )
    reps = [r for o in outcomes for r in o.reproductions]
    agree = {True: "agree", False: "**disagree**", None: "undecided at this size", C.NOT_RUN: C.NOT_RUN}
    rep_rows = "\n".join(
        f"| {r.source} | {r.setting} | {r.expected} | {r.measured} | {agree[r.agrees]} |" for r in reps
    )
    fail_rows = "\n".join(f"- `{n}`: {msg}" for n, msg in failures.items())
    text = [
        "# gradpaths: claims report\n",
        f"Scale **{args.scale}**, {'float64' if args.float64 else 'float32'}; wall time {wall:.0f} s. "
        "Each verdict is computed from the measurements by the experiment's `verdict` function; "
        "per-experiment details are in `<name>/summary.md` and `<name>/results.json`.\n",
        "| claim | statement | measured | verdict | figure |",
        "|---|---|---|---|---|",
        *rows,
    ]
    if extras:
        text += [
            "\n## Further experiments\n",
            "| experiment | measured | verdict | figure |",
            "|---|---|---|---|",
            extra_rows,
        ]
    if reps:
        text += [
            "\n## Reproductions\n",
            "| source | setting | published expectation | measured | |",
            "|---|---|---|---|---|",
            rep_rows,
        ]
    if failures:
        text += ["\n## Failures\n", fail_rows]
    return "\n".join(text) + "\n"


def groups(names: list[str]) -> list[tuple[str, ...]]:
    """``names`` as the groups that run in one process (``GROUPS``; others alone): ``HEAVY`` first, then
    in REGISTRY order."""
    order = [n for _, n in REGISTRY]
    out = [tuple(n for n in g if n in names) for g in GROUPS]
    out = [g for g in out if g] + [(n,) for n in names if not any(n in g for g in GROUPS)]
    heavy = lambda g: min((HEAVY.index(n) for n in g if n in HEAVY), default=len(HEAVY))
    return sorted(out, key=lambda g: (heavy(g), order.index(g[0])))


def run_groups(args: C.Args, todo: list[tuple[str, ...]], workers: int):
    """Yields ``_common.run_group``'s results: in this process (every core) for one worker or one group,
    else from a pool of fresh processes, each pinned to one core (``_common.pin_worker``)."""
    claims = dict((n, c) for c, n in REGISTRY)
    todo = [tuple((claims[n], n) for n in g) for g in todo]
    if workers == 1 or len(todo) <= 1:
        yield from (C.run_group(args, g) for g in todo)
        return
    ctx = multiprocessing.get_context("spawn")  # a fresh JAX per process: no forked runtime threads
    n = min(workers, len(todo))
    cores, slots = C.core_ids(), ctx.Queue()
    for i in range(n):
        slots.put(cores[i % len(cores)])
    with concurrent.futures.ProcessPoolExecutor(n, mp_context=ctx, initializer=C.pin_worker, initargs=(slots,)) as pool:
        futures = [pool.submit(C.run_group, args, g) for g in todo]
        yield from (f.result() for f in concurrent.futures.as_completed(futures))


def main(argv=None) -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--only", default="", help="comma-separated claims or experiment names to run")
    p.add_argument("--fresh", action="store_true", help="recompute finished experiments")
    p.add_argument("--workers", type=int, default=C.cores(), help="processes running experiments (default: cores)")
    ns = p.parse_args(argv)
    args = C.args_from(ns)
    if ns.workers < 1:
        raise SystemExit(f"--workers must be >= 1, got {ns.workers}")
    if args.quick:  # before any JAX backend starts; the workers inherit it
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = " ".join([flags, *(f for f in QUICK_FLAGS if f.split("=")[0] not in flags)]).strip()
    only = {s.strip() for s in ns.only.split(",") if s.strip()}
    mods = [(c, m) for c, m in available() if not only or c in only or m.NAME in only]
    t0 = time.perf_counter()
    outcomes, todo = {}, []
    for claim, mod in mods:
        old = None if ns.fresh else reuse(args, mod.NAME)
        if old is None:
            todo.append(mod.NAME)
            continue
        C.progress(f"{claim or '--'} {mod.NAME}: reusing finished result ({old.verdict}); --fresh recomputes")
        outcomes[mod.NAME] = old
    failures = {}
    for done, failed in run_groups(args, groups(todo), ns.workers):
        outcomes |= done
        failures |= failed
    wall = time.perf_counter() - t0
    chosen = {m.NAME for _, m in mods}
    kept = {m.NAME: o for _, m in available() if m.NAME not in chosen and (o := reuse(args, m.NAME)) is not None}
    outcomes = outcomes | kept  # the report keeps finished results of experiments not run this time
    outcomes = [outcomes[m.NAME] for _, m in available() if m.NAME in outcomes]  # REGISTRY order
    path = Path(args.out) / "REPORT.md"
    C.atomic_write(path, report(args, outcomes, failures, wall))
    print(f"wrote {path} ({len(outcomes)} experiments, {len(failures)} failed, {wall:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
