"""gradpaths' LSTM gradient against Flax ``nn.RNN(nn.OptimizedLSTMCell)`` and PyTorch ``nn.LSTM``.

All three run forward + backward of loss = mean(h²) on the same weights and inputs
(gradpaths params copied into Flax's per-gate Dense kernels and into torch's
weight_ih / weight_hh with bias_hh = 0), float32. The outputs and the W_h gradients
are compared first, so the timings are of the same computation. torch runs with
1 thread and with one thread per core (the issue's "same thread count"), and runs on CUDA only
when JAX does. T ∈ {100, 500}.

Goal: the gradpaths gradient at least as fast as PyTorch nn.LSTM (ratio ≤ 1).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

import gradpaths as gp
from benchmarks import timing

NAME = "frameworks"
FULL = {"batch": 32, "hidden": 128, "inputs": 8, "steps": (100, 500), "repeats": 20}
QUICK = {"batch": 4, "hidden": 16, "inputs": 3, "steps": (10,), "repeats": 3}
GATES = ("i", "f", "g", "o")
GP_GRAD, GP_AUTODIFF, FLAX = "gradpaths jax.grad", "gradpaths (autodiff scan)", "flax OptimizedLSTMCell"
THREADS = tuple(sorted({1, os.cpu_count() or 1}))
TORCH = {n: f"torch nn.LSTM, {n} thread{'s' * (n > 1)}" for n in THREADS}


def to_flax(params, hidden: int) -> dict:
    """gradpaths LSTM params -> variables of nn.RNN(nn.OptimizedLSTMCell(H)) (gates i, f, g, o)."""
    blocks = lambda w: dict(zip(GATES, jnp.split(w, 4, axis=-1)))
    wx, wh, b = blocks(params["W_x"]), blocks(params["W_h"]), blocks(params["b"])
    cell = {f"i{g}": {"kernel": wx[g]} for g in GATES}
    cell |= {f"h{g}": {"kernel": wh[g], "bias": b[g]} for g in GATES}
    return {"params": {"cell": cell}}


def flax_grad(hidden: int, xs):
    import flax.linen as nn

    rnn = nn.RNN(nn.OptimizedLSTMCell(hidden))
    grad = jax.jit(jax.grad(lambda v: timing.mse(rnn.apply(v, xs))))
    return rnn, grad


def torch_setup(params, xs):
    """An nn.LSTM holding gradpaths' weights, and its input; on CUDA only if JAX is on a GPU."""
    import torch

    device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
    n_i, n_h = params["W_x"].shape[0], params["W_h"].shape[0]
    lstm = torch.nn.LSTM(n_i, n_h, batch_first=True).to(device)
    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32)).to(device)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(t(params["W_x"].T))
        lstm.weight_hh_l0.copy_(t(params["W_h"].T))
        lstm.bias_ih_l0.copy_(t(params["b"]))
        lstm.bias_hh_l0.zero_()
    return lstm, t(xs), device


def run_one(config: dict, steps: int, repeats: int) -> dict:
    """Every case at one T, timed in one interleaved set; torch at 1 thread and at one per core."""
    cell, params, xs = timing.lstm_problem(config["batch"], config["hidden"], config["inputs"], steps)
    fns, checks = {}, {}
    for name, backward in ((GP_GRAD, "custom"), (GP_AUTODIFF, "autodiff")):
        f = jax.jit(jax.grad(lambda p, b=backward: timing.mse(gp.unroll(cell, p, xs, backward=b))))
        fns[name] = lambda f=f: f(params)
    ref_hs, ref_g = gp.unroll(cell, params, xs), fns[GP_GRAD]()
    rnn, fgrad = flax_grad(config["hidden"], xs)
    variables = to_flax(params, config["hidden"])
    fns[FLAX] = lambda: fgrad(variables)
    fg = fgrad(variables)["params"]["cell"]
    flax_wh = jnp.concatenate([fg[f"h{g}"]["kernel"] for g in GATES], axis=-1)
    checks[FLAX] = {
        "max_abs_h_diff": float(jnp.abs(rnn.apply(variables, xs) - ref_hs).max()),
        "rel_error_dW_h": timing.rel_error(flax_wh, ref_g["W_h"]),
    }
    torch_device = None
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        lstm, x_t, torch_device = torch_setup(params, xs)

        def torch_step(threads):
            torch.set_num_threads(threads)
            lstm.zero_grad(set_to_none=True)
            out, _ = lstm(x_t)
            (out**2).mean().backward()
            if torch_device == "cuda":
                torch.cuda.synchronize()

        for n, name in TORCH.items():
            fns[name] = lambda n=n: torch_step(n)
        torch_step(THREADS[-1])
        out, _ = lstm(x_t)
        check = {
            "max_abs_h_diff": float(np.abs(out.detach().cpu().numpy() - np.asarray(ref_hs)).max()),
            "rel_error_dW_h": timing.rel_error(jnp.asarray(lstm.weight_hh_l0.grad.cpu().numpy().T), ref_g["W_h"]),
        }
        checks |= {name: check for name in TORCH.values()}
    timed = timing.time_cases(fns, repeats=repeats)
    ref = TORCH[THREADS[-1]] if torch is not None else FLAX
    rows = [
        {
            "case": n,
            "ms": t["ms"],
            "vs_ref": timing.ratio(timed, n, ref),
            "vs_flax": timing.ratio(timed, n, FLAX),
            "check": checks.get(n),
        }
        for n, t in timed.items()
    ]
    goals = []
    for against in (*TORCH.values(), FLAX):
        if against in fns:
            r = timing.ratio(timed, GP_GRAD, against)["median"]
            goals.append(
                {
                    "case": f"{GP_GRAD}, T={steps}",
                    "reference": against,
                    "ratio": r,
                    "goal": 1.0,
                    "verdict": timing.goal(r, 1.0),
                }
            )
    return {"steps": steps, "reference": ref, "torch_device": torch_device, "rows": rows, "goals": goals}


def run(config: dict, repeats: int) -> dict:
    per_t = [run_one(config, steps, repeats) for steps in config["steps"]]
    return {"config": config, "per_t": per_t, "goals": [g for r in per_t for g in r["goals"]]}


def markdown(result: dict) -> str:
    c = result["config"]
    fmt_check = lambda k: "-" if k is None else f"h {k['max_abs_h_diff']:.1e}, dW_h {k['rel_error_dW_h']:.1e}"
    body = ""
    for r in result["per_t"]:
        body += (
            f"LSTM B={c['batch']}, H={c['hidden']}, I={c['inputs']}, T={r['steps']}, float32, forward + backward "
            f"of mean(h²); torch on {r['torch_device'] or 'n/a (not installed)'}; JAX with its default "
            f"thread pool.\n\n"
        )
        body += timing.markdown_table(
            ["case", "ms", f"÷ {r['reference']}", f"÷ {FLAX}", "same computation (max abs Δh, rel. error dW_h)"],
            [
                [
                    row["case"],
                    timing.fmt_ms(row["ms"]),
                    timing.fmt_ratio(row["vs_ref"]),
                    timing.fmt_ratio(row["vs_flax"]),
                    fmt_check(row["check"]),
                ]
                for row in r["rows"]
            ],
        )
        body += "\n\n"
    return body + "Goals:\n\n" + timing.goals_table(result["goals"])


def main(argv: Sequence[str] | None = None) -> dict:
    return timing.run_main(sys.modules[__name__], "LSTM forward + backward: gradpaths, Flax, PyTorch", argv)


if __name__ == "__main__":
    main()
