"""Scaling in T, H and K: a plain gradient and a decomposition, timed side by side at each point.

At each point: ``jax.grad`` of mse(gp.unroll) (custom VJP), the same with
``backward="autodiff"``, and ``gp.decompose(parts=("hops",), max_hops=K)``. The
ratios are per point, against the custom-VJP gradient measured in the same rounds.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

import gradpaths as gp
from benchmarks import timing

NAME = "scaling"
BASE = {"batch": 32, "hidden": 128, "inputs": 8, "steps": 100, "hops": 1}
FULL = {
    "base": BASE,
    "sweeps": {"steps": (100, 500, 1000, 2000), "hidden": (32, 128, 512), "hops": (0, 1, 3, 9, 19, 39)},
    "repeats": 5,
    "budget_s": 20.0,
}
QUICK = {
    "base": {"batch": 2, "hidden": 8, "inputs": 3, "steps": 10, "hops": 1},
    "sweeps": {"steps": (10, 20), "hidden": (4, 8), "hops": (0, 2)},
    "repeats": 3,
    "budget_s": 5.0,
}
GRAD, AUTODIFF = "jax.grad (custom VJP)", "jax.grad (autodiff scan)"


def point(p: dict, repeats: int, budget_s: float) -> dict:
    cell, params, xs = timing.lstm_problem(p["batch"], p["hidden"], p["inputs"], p["steps"])
    grad = lambda b: jax.jit(jax.grad(lambda q: timing.mse(gp.unroll(cell, q, xs, backward=b))))
    dec = jax.jit(lambda q: gp.decompose(cell, q, xs, timing.mse, max_hops=p["hops"], parts=("hops",)).by_hops)
    fns = {GRAD: grad("custom"), AUTODIFF: grad("autodiff"), f"decompose K={p['hops']}": dec}
    timed = timing.time_cases({k: (lambda f=f: f(params)) for k, f in fns.items()}, repeats, budget_s=budget_s)
    return {name: {"ms": t["ms"], "vs_grad": timing.ratio(timed, name, GRAD)} for name, t in timed.items()}


def run(config: dict, repeats: int) -> dict:
    rows = []
    for axis, values in config["sweeps"].items():
        for v in values:
            p = dict(config["base"], **{axis: v})
            timed = point(p, repeats, config["budget_s"])
            rows.append({"axis": axis, "value": v, "point": p, "cases": timed})
            print(f"{axis}={v}: " + ", ".join(f"{k} {t['ms']['median']:.1f} ms" for k, t in timed.items()), flush=True)
    return {"config": config, "rows": rows}


def markdown(result: dict) -> str:
    b = result["config"]["base"]
    body = (
        f"Base point: LSTM B={b['batch']}, H={b['hidden']}, I={b['inputs']}, T={b['steps']}, K={b['hops']}, "
        "float32; one axis varies at a time.\n\n"
    )
    table = []
    for r in result["rows"]:
        c = r["cases"]
        dec = next(k for k in c if k.startswith("decompose"))
        table.append(
            [
                f"{r['axis']}={r['value']}",
                timing.fmt_ms(c[GRAD]["ms"]),
                timing.fmt_ms(c[AUTODIFF]["ms"]),
                timing.fmt_ratio(c[AUTODIFF]["vs_grad"]),
                dec,
                timing.fmt_ms(c[dec]["ms"]),
                timing.fmt_ratio(c[dec]["vs_grad"]),
            ]
        )
    body += timing.markdown_table(
        ["point", f"{GRAD} ms", f"{AUTODIFF} ms", "autodiff ÷ custom", "decompose", "ms", "÷ custom grad"], table
    )
    return body


def main(argv: Sequence[str] | None = None) -> dict:
    args = timing.parse_args(NAME, __doc__.splitlines()[0], argv)
    config = dict(QUICK if args.quick else FULL)
    result = run(config, args.repeats or config["repeats"])
    timing.write(args.out, NAME, "Scaling in T, H and K", result, markdown(result))
    return result


if __name__ == "__main__":
    main()
