"""Cost of a decomposition against a plain gradient, on the same LSTM problem.

Cases (all jitted, float32): ``jax.grad`` of mse(gp.unroll(...)) with the default
custom VJP; the same with ``backward="autodiff"`` (a plain autodiff scan); and
``gp.decompose(..., parts=("hops",), max_hops=K)`` for K ∈ {0, 1, 3, 9}, i.e. K + 1
cotangent buckets, on the fast affine path; and the same LSTM through the **generic**
engine (``gp.stack([lstm])``: the same maths, one VJP of the whole step per bucket) at
K = 1 and 9; at each T in ``steps`` (the goals' T = 100 and 500, and T = 200 where the
engine's issue states the generic path's cost). ``parts=("distance",)`` is timed separately at
the first T, and with ``max_distance=32`` at T_long (O(T·D) instead of O(T²)).

Goals: 2 buckets (K = 1) ≤ 1.5× and 10 buckets (K = 9) ≤ 3× a plain gradient;
by_distance with D = 32 at T = 1000 ≤ 40×. The generic path's cost is reported, not a goal.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import jax

import gradpaths as gp
from benchmarks import timing

NAME = "decompose_cost"
FULL = {
    "batch": 32,
    "hidden": 128,
    "inputs": 8,
    "steps": (100, 200, 500),
    "hops": (0, 1, 3, 9),
    "repeats": 15,
    "long": 1000,  # by_distance with max_distance at this T
}
QUICK = {"batch": 4, "hidden": 16, "inputs": 3, "steps": 20, "hops": (0, 1, 3, 9), "repeats": 3, "long": 60}
GOALS = {1: 1.5, 9: 3.0}
DISTANCE_D, DISTANCE_GOAL = 32, 40.0
GRAD, AUTODIFF = "jax.grad (custom VJP)", "jax.grad (autodiff scan)"


def matmul_macs(config: dict, buckets: int | None) -> int:
    """Multiply-adds in the matmuls: the forward (x W_x, h W_h), the reverse (da W_hᵀ per bucket)
    and the parameter contractions (xᵀdu, mᵀda per bucket). buckets=None: a plain gradient (one
    cotangent). The elementwise work and loop overheads are left out: this is the floor a
    matmul-bound machine would reach."""
    t, b, i, h = config["steps"], config["batch"], config["inputs"], config["hidden"]
    gh = 4 * h
    k1 = 1 if buckets is None else buckets
    return t * b * (i + h) * gh + k1 * t * b * gh * h + k1 * t * b * (i + h) * gh


def cases(cell, params, xs, hops: Sequence[int], parts=("hops",), max_distance=None) -> dict:
    """The jitted zero-argument callables: the two gradients and one decompose per K."""

    def grad(backward):
        f = jax.jit(jax.grad(lambda p: timing.mse(gp.unroll(cell, p, xs, backward=backward))))
        return lambda: f(params)

    def dec(k):
        f = jax.jit(
            lambda p: gp.decompose(cell, p, xs, timing.mse, max_hops=k, parts=parts, max_distance=max_distance).total
        )
        return lambda: f(params)

    out = {GRAD: grad("custom"), AUTODIFF: grad("autodiff")}
    label = lambda k: f"decompose hops K={k} ({k + 1} buckets)" if parts == ("hops",) else f"decompose {parts[0]}"
    out.update({label(k): dec(k) for k in hops})
    return out


def generic_cases(cell, params, xs, hops: Sequence[int]) -> dict:
    """The same LSTM through the generic engine: a one-layer ``gp.stack`` is not an affine type."""
    one, p1 = gp.stack([cell]), (params,)
    out = {}
    for k in hops:
        f = jax.jit(lambda p, k=k: gp.decompose(one, p, xs, timing.mse, max_hops=k, parts=("hops",)).total[0])
        out[f"generic engine hops K={k} ({k + 1} buckets)"] = lambda f=f: f(p1)
    return out


def _buckets(name: str) -> int | None:
    return int(name.split("(")[1].split()[0]) if "buckets" in name else None


def run(config: dict, repeats: int) -> dict:
    """Every case at each T in ``config["steps"]`` (an int or a tuple), then the long by_distance goal."""
    steps = config["steps"] if isinstance(config["steps"], (tuple, list)) else (config["steps"],)
    per_t = [run_at(dict(config, steps=t), repeats, distance=i == 0) for i, t in enumerate(steps)]
    goals = [g for r in per_t for g in r.pop("goals")] + [long_distance(config)]
    return {"config": config, "per_t": per_t, "goals": goals}


def run_at(config: dict, repeats: int, distance: bool) -> dict:
    """One T: the timed cases, their errors against autodiff, the goal rows; all distances if ``distance``."""
    cell, params, xs = timing.lstm_problem(config["batch"], config["hidden"], config["inputs"], config["steps"])
    fns = cases(cell, params, xs, config["hops"]) | generic_cases(cell, params, xs, (1, 9))
    ref = fns[AUTODIFF]()
    errors = {name: timing.rel_error(fn(), ref) for name, fn in fns.items()}
    timed = timing.time_cases(fns, repeats=repeats)
    rows, goals = [], []
    for name, t in timed.items():
        rows.append(
            {
                "case": name,
                "ms": t["ms"],
                "vs_grad": timing.ratio(timed, name, GRAD),
                "vs_autodiff": timing.ratio(timed, name, AUTODIFF),
                "rel_error_vs_autodiff": errors[name],
                "matmul_mac_ratio_model": matmul_macs(config, _buckets(name)) / matmul_macs(config, None),
            }
        )
    for k, limit in GOALS.items():
        name = next((n for n in timed if f"K={k} " in n and not n.startswith("generic")), None)
        if name is None:
            continue
        for ref_name in (GRAD, AUTODIFF):
            r = timing.ratio(timed, name, ref_name)["median"]
            case = f"{name} at T={config['steps']}"
            goals.append(
                {"case": case, "reference": ref_name, "ratio": r, "goal": limit, "verdict": timing.goal(r, limit)}
            )
    out = {"config": config, "rows": rows, "goals": goals}
    if distance:
        dist_fns = {GRAD: fns[GRAD], **cases(cell, params, xs, (1,), parts=("distance",))}
        dist_fns.pop(AUTODIFF)
        dist = timing.time_cases(dist_fns, repeats=3, warmup=0)
        dname = next(n for n in dist if n != GRAD)
        out["distance"] = {"case": dname, "ms": dist[dname]["ms"], "vs_grad": timing.ratio(dist, dname, GRAD)}
    return out


def long_distance(config: dict) -> dict:
    """by_distance with max_distance = D at T_long, against a plain gradient on the same problem."""
    cell, params, xs = timing.lstm_problem(config["batch"], config["hidden"], config["inputs"], config["long"])
    both = cases(cell, params, xs, (0,), parts=("distance",), max_distance=DISTANCE_D)
    name = f"decompose distance D={DISTANCE_D} at T={config['long']}"
    fns = {GRAD: both[GRAD], name: both["decompose distance"]}
    t = timing.time_cases(fns, repeats=3, warmup=0)
    r = timing.ratio(t, name, GRAD)["median"]
    return {
        "case": name,
        "reference": GRAD,
        "ratio": r,
        "goal": DISTANCE_GOAL,
        "verdict": timing.goal(r, DISTANCE_GOAL),
    }


def markdown(result: dict) -> str:
    body = ""
    for r_t in result["per_t"]:
        c = r_t["config"]
        body += f"LSTM B={c['batch']}, H={c['hidden']}, I={c['inputs']}, T={c['steps']}, float32, loss = mean(h²).\n\n"
        body += timing.markdown_table(
            ["case", "ms", f"÷ {GRAD}", f"÷ {AUTODIFF}", "matmul MACs ÷ grad's (model)", "rel. error vs autodiff"],
            [
                [
                    r["case"],
                    timing.fmt_ms(r["ms"]),
                    timing.fmt_ratio(r["vs_grad"]),
                    timing.fmt_ratio(r["vs_autodiff"]),
                    f"{r['matmul_mac_ratio_model']:.2f}",
                    f"{r['rel_error_vs_autodiff']:.1e}",
                ]
                for r in r_t["rows"]
            ],
        )
        if "distance" in r_t:
            d = r_t["distance"]
            body += f"\n\nFor information: {d['case']} at T={c['steps']}: {timing.fmt_ms(d['ms'])} ms, "
            body += f"{timing.fmt_ratio(d['vs_grad'])} {GRAD}."
        body += "\n\n"
    body += "Goals:\n\n" + timing.goals_table(result["goals"])
    return body


def main(argv: Sequence[str] | None = None) -> dict:
    return timing.run_main(sys.modules[__name__], "Decomposition cost against a plain gradient", argv)


if __name__ == "__main__":
    main()
