"""Runs every claim experiment and writes DIR/REPORT.md.

    python -m experiments [--quick | --scale full] [--seeds N] [--out DIR] [--float64] [--only C1,C4] [--fresh]

Finished experiments (a results.json at the same scale, seeds and dtype, written by the
same code: ``_common.code_version``, a hash of the experiment module, the shared
experiment modules and the gradpaths sources) are reused, so an interrupted run
resumes; results that older code wrote are recomputed; ``--fresh`` recomputes everything.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

import jax

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
    ("", "hdetach"),
    ("", "paths_training"),
    ("", "distance_hops_map"),
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


def main(argv=None) -> int:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--only", default="", help="comma-separated claims or experiment names to run")
    p.add_argument("--fresh", action="store_true", help="recompute finished experiments")
    ns = p.parse_args(argv)
    args = C.args_from(ns)
    C.setup_jax(Path(args.out) / ".jax_cache")
    only = {s.strip() for s in ns.only.split(",") if s.strip()}
    mods = [(c, m) for c, m in available() if not only or c in only or m.NAME in only]
    t0 = time.perf_counter()
    outcomes, failures = [], {}
    for i, (claim, mod) in enumerate(mods, 1):
        label = f"[{i}/{len(mods)}] {claim or '--'} {mod.NAME}"
        old = None if ns.fresh else reuse(args, mod.NAME)
        if old is not None:
            C.progress(f"{label}: reusing finished result ({old.verdict}); --fresh recomputes")
            outcomes.append(old)
            continue
        C.progress(f"{label}: running ({args.scale})")
        t1 = time.perf_counter()
        try:
            o = mod.run(args)
        except Exception as e:  # one broken experiment must not lose the others' work
            traceback.print_exc()
            failures[mod.NAME] = f"{type(e).__name__}: {e}"
            continue
        finally:
            jax.clear_caches()  # each executable holds memory maps; one process runs them all (docs/hang.md)
        outcomes.append(o)
        C.progress(f"{label}: {o.verdict} — {o.headline} ({time.perf_counter() - t1:.1f} s)")
    wall = time.perf_counter() - t0
    chosen = {m.NAME for _, m in mods}
    kept = [o for _, m in available() if m.NAME not in chosen and (o := reuse(args, m.NAME)) is not None]
    outcomes = kept + outcomes  # the report keeps finished results of experiments not run this time
    path = Path(args.out) / "REPORT.md"
    C.atomic_write(path, report(args, outcomes, failures, wall))
    print(f"wrote {path} ({len(outcomes)} experiments, {len(failures)} failed, {wall:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
