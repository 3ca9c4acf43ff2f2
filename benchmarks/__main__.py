"""Runs every benchmark, then writes OUT/benchmarks/SUMMARY.md: every goal with its measured ratio."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from benchmarks import NAMES, timing


def summary(results: dict[str, dict]) -> str:
    """One table of every goal row the benchmarks measured."""
    rows = [
        [name, g["case"], g["reference"], f"{g['ratio']:.2f}×", f"≤ {g['goal']}×", g["verdict"]]
        for name, res in results.items()
        for g in res.get("goals", [])
    ]
    return timing.markdown_table(["benchmark", "case", "against", "ratio", "goal", "verdict"], rows)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = timing.parse_args("__main__", __doc__.splitlines()[0], argv)
    results = {}
    for name in NAMES:
        print(f"=== benchmarks.{name}", flush=True)
        results[name] = importlib.import_module(f"benchmarks.{name}").main(argv)
    body = summary(results)
    if args.quick:
        body += "\n\n--quick sizes: the verdicts are smoke-run outputs, not measurements of the goals."
    timing.write(args.out, "SUMMARY", "Goals", {"goals": {n: r.get("goals", []) for n, r in results.items()}}, body)


if __name__ == "__main__":
    main()
