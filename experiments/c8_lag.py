"""C8: success rate against the lag T for rnn, lstm and gru on the adding and copy tasks.

Every cell is trained with the same recipe (Adam, clip_by_global_norm(1), the same H,
batch and steps) on ``tasks.make(task, T)``, several seeds per (task, T, cell), all
seeds of a point in one jitted ``vmap``. The outcome of a seed is its final loss
ratio r = (mean loss over the last ``segment`` training steps) / (the task's no-memory
baseline: 1/6 for adding, 10 ln 8 / (T+20) for copy). Success and failure are defined
before any run:

- **success**: r < ``SUCCESS`` = 0.5. That is better than any model that remembers only
  half of what the task needs: for adding, remembering one marked value exactly and
  guessing the other (prediction U_1 + 1/2) has MSE Var(U_2) = 1/12 = baseline/2; for
  copy, recalling 5 of the 10 symbols exactly leaves CE 5 ln 8 / (T+20) = baseline/2.
  A seed that diverges (non-finite loss or gradient) fails.
- **stays at the baseline**: the median r over seeds is ≥ ``STAY`` = 0.9 (under 10% gain).

Criterion (CLAIMS.md): the LSTM and GRU solve lags at which the RNN stays at the
no-memory baseline. A (task, T) is a *gated win* when the success rate of both the
LSTM and the GRU is ≥ 1/2 while the RNN stays at the baseline. SUPPORTED if every task
has a gated win; NUANCED if some task has one but not every task, or if only one of
LSTM/GRU solves a lag at which the RNN stays at the baseline; NOT SUPPORTED otherwise.
A task on which no cell succeeds at any T (too few steps to solve it) decides nothing
and is left out, and the headline says so; INCONCLUSIVE if no task is left.

This module also holds ``train_point``, the cached seed-parallel training run that
c6_clipping and c9_irnn share (c9_irnn reuses this module's adding runs).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common as C
from experiments import sweep
from gradpaths import train as gt

CLAIM, NAME = "C8", "c8_lag"
TITLE = "C8: success rate against lag T for rnn, lstm and gru on adding and copy"
SUCCESS, STAY = 0.5, 0.9
CELLS = ("rnn", "lstm", "gru")
TASKS = ("adding", "copy")


# ----------------------------------------------------------------------------- shared training


def train_point(
    config: gt.TrainConfig, n_seeds: int, path: Path, *, base_seed: int = 0, w_h_scale=None, label: str = ""
) -> dict:
    """Trains ``n_seeds`` seeds of ``config`` together; the record is cached at ``path``.

    Parameters are initialised eagerly (``vmap`` of the trainer's init, whose primitives
    stay compiled across configs); the segments run through ``train.make_seeds``, one
    compiled function per config, reused for every segment and by every module that
    trains the same config. ``w_h_scale`` [n_seeds], if given, multiplies each seed's
    W_h after initialisation, so one compiled trainer covers several recurrent scales
    g (W_h = g·W_h(g=1) for every recurrent_init; the optimiser state at init does not
    depend on the parameters' values).

    Returns (and writes atomically) {"loss", "grad_norm", "clipped": [seeds][segments]
    (None where a seed had diverged), "diverged_at": [seeds] (-1: never), "baseline",
    "step": [segments], "w_h_scale", "wall_s", "config"}.
    """
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
        raise ValueError(f"n_seeds must be an int >= 1, got {n_seeds!r}")
    if w_h_scale is not None and np.shape(w_h_scale) != (n_seeds,):
        raise ValueError(f"w_h_scale must have shape ({n_seeds},), got {np.shape(w_h_scale)}")

    def compute():
        C.progress(f"  {label or Path(path).stem}: {n_seeds} seeds x {config.steps} steps")
        t0 = time.perf_counter()
        trainer, runner = gt.make_trainer(config), gt.make_seeds(config)
        states = jax.vmap(trainer.init)(jax.random.split(jax.random.key(base_seed), n_seeds))
        if w_h_scale is not None:
            cell = states.params["cell"]
            g = jnp.asarray(w_h_scale, cell["W_h"].dtype)[:, None, None]
            states = states._replace(params={**states.params, "cell": {**cell, "W_h": cell["W_h"] * g}})
        segments = []
        for _ in range(config.steps // config.segment):
            states, metrics = runner.run_segment(states)
            segments.append(jax.device_get(metrics))
        stack = lambda f: np.stack([np.asarray(getattr(m, f), float) for m in segments], axis=1)
        return {
            "config": dataclasses.asdict(config),
            "loss": stack("loss"),
            "grad_norm": stack("grad_norm"),
            "clipped": stack("clipped"),
            "diverged_at": np.asarray(states.diverged_at),
            "baseline": float(np.asarray(segments[0].baseline)[0]),
            "step": np.arange(1, len(segments) + 1) * config.segment,
            "w_h_scale": None if w_h_scale is None else np.asarray(w_h_scale, float),
            "wall_s": time.perf_counter() - t0,
        }

    return C.cached(path, compute)


def point_path(folder: Path, label: str, config: gt.TrainConfig, n_seeds: int) -> Path:
    """``folder/<label>-<config hash>-<n>seeds.json``: a changed config never reuses a stale file."""
    return Path(folder) / f"{label}-{sweep.point_name(config)}-{n_seeds}seeds.json"


def final_ratio(record: dict) -> np.ndarray:
    """Per seed: last-segment loss / baseline; NaN for a seed that diverged."""
    loss = np.array([np.nan if row[-1] is None else row[-1] for row in record["loss"]], float)
    loss[np.asarray(record["diverged_at"]) >= 0] = np.nan
    return loss / record["baseline"]


def success_rate(ratios) -> float:
    """The fraction of seeds with r < SUCCESS (a diverged seed, NaN, fails)."""
    r = np.asarray(ratios, float)
    return float(np.mean(np.where(np.isfinite(r), r, np.inf) < SUCCESS))


def median_ratio(ratios) -> float:
    """Median r, a diverged seed counted as +inf."""
    r = np.asarray(ratios, float)
    return float(np.median(np.where(np.isfinite(r), r, np.inf)))


# ----------------------------------------------------------------------------- C8


def sizes(args: C.Args) -> dict:
    """Per-scale settings (measured: on 2 CPU cores an H=16 LSTM step, T=50, batch 32, takes ~3 ms a seed)."""
    return {
        "H": {"adding": args.pick(4, 16, 64), "copy": args.pick(4, 32, 128)},
        "batch": args.pick(8, 32, 64),
        "lr": 1e-2,
        "T": {
            "adding": args.pick((5,), (10, 50, 100), (50, 100, 200, 400)),
            "copy": args.pick((), (10,), (10, 20, 50, 100)),
        },
        "steps": {"adding": args.pick(20, 600, 3000), "copy": args.pick(20, 1000, 10000)},
        "segment": args.pick(10, 50, 100),
        "seeds": args.n_seeds(2, 4, 16),
        "cells": args.pick(("rnn", "lstm"), CELLS, CELLS),
    }


def config(sz: dict, task: str, T: int, cell: str) -> gt.TrainConfig:
    """The shared recipe (c9_irnn reuses these adding points)."""
    return gt.TrainConfig(
        task=task,
        T=T,
        cell=cell,
        hidden_size=sz["H"][task],
        batch_size=sz["batch"],
        steps=sz["steps"][task],
        segment=sz["segment"],
        lr=sz["lr"],
        clip_norm=1.0,
        dtype=jnp.dtype(jnp.float32).name,
    )


def run_grid(args: C.Args, sz: dict, task: str, cells=None) -> dict[int, dict[str, dict]]:
    """{T: {cell: record}} for one task, cached under c8_lag/points (shared with c9_irnn)."""
    folder = args.dir(NAME) / "points"
    out = {}
    for T in sz["T"][task]:
        out[T] = {}
        for cell in cells or sz["cells"]:
            cfg = config(sz, task, T, cell)
            path = point_path(folder, f"{task}-T{T}-{cell}", cfg, sz["seeds"])
            out[T][cell] = train_point(cfg, sz["seeds"], path, label=f"C8 {task} T={T} {cell}")
    return out


def verdict(success: dict[str, dict[str, list[float]]], rnn_median: dict[str, list[float]]) -> str:
    """The rule in the module docstring.

    Args:
      success: {task: {"rnn": [rate per T], "lstm": [...], "gru": [...]}}, rates in [0, 1].
      rnn_median: {task: [the RNN's median final loss / baseline per T]}.

    A task on which no cell succeeds at any T decides nothing (too few steps to solve
    it) and is left out; INCONCLUSIVE if that leaves no task.
    """
    if not success or set(success) != set(rnn_median):
        raise ValueError(
            f"need the same tasks in success and rnn_median, got {sorted(success)} and {sorted(rnn_median)}"
        )
    wins, partial = [], False
    for task, rates in success.items():
        lstm, gru, rnn_s, rnn = (
            np.asarray(x, float) for x in (rates["lstm"], rates["gru"], rates["rnn"], rnn_median[task])
        )
        if not (len(lstm) == len(gru) == len(rnn_s) == len(rnn)):
            raise ValueError(f"task {task!r}: need one value per T for every cell and rnn_median")
        if not (np.any(lstm > 0) or np.any(gru > 0) or np.any(rnn_s > 0)):
            continue
        stays = rnn >= STAY
        wins.append(bool(np.any(stays & (lstm >= 0.5) & (gru >= 0.5))))
        partial |= bool(np.any(stays & ((lstm >= 0.5) | (gru >= 0.5))))
    if not wins:
        return C.INCONCLUSIVE
    if all(wins):
        return C.SUPPORTED
    return C.NUANCED if any(wins) or partial else C.NOT_SUPPORTED


def run(args: C.Args) -> C.Outcome:
    sz = sizes(args)
    grids = {task: run_grid(args, sz, task) for task in TASKS if sz["T"][task]}
    ratios = {t: {T: {c: final_ratio(r) for c, r in g.items()} for T, g in grid.items()} for t, grid in grids.items()}
    succ = {t: {c: [success_rate(ratios[t][T][c]) for T in grid] for c in sz["cells"]} for t, grid in grids.items()}
    med = {t: {c: [median_ratio(ratios[t][T][c]) for T in grid] for c in sz["cells"]} for t, grid in grids.items()}
    n_seeds = sz["seeds"]
    if args.quick:
        v = C.INCONCLUSIVE
        why = f"quick mode: {sz['steps']['adding']} steps cannot show learning"
    else:
        v = verdict(succ, {t: med[t]["rnn"] for t in grids})
        why = ""
    parts = []
    for t, grid in grids.items():
        per_t = [
            f"T={T}: "
            + " ".join(f"{c} {round(succ[t][c][i] * n_seeds)}/{n_seeds}" for c in sz["cells"])
            + f" (rnn r={C.fmt(med[t]['rnn'][i])})"
            for i, T in enumerate(grid)
        ]
        parts.append(f"{t} " + "; ".join(per_t))
    undecided = [t for t in grids if not any(np.any(np.asarray(succ[t][c]) > 0) for c in sz["cells"])]
    if undecided and not why:
        steps = ", ".join(f"{sz['steps'][t]} steps of {t}" for t in undecided)
        why = f"{', '.join(undecided)}: no cell solved it at any T in {steps}, so it decides nothing"
    headline = f"seeds with final loss < {SUCCESS}×baseline — " + " | ".join(parts) + (f"; {why}" if why else "")
    base = None if args.quick else _copy_baselines(sz)  # quick: skip the sampler compiles
    reps = _reproductions(grids, ratios, med, sz, base)
    summary = _summary(sz, grids, succ, med)
    outcome = C.Outcome(CLAIM, NAME, v, headline, "c8_lag.png", reps)
    C.write_outputs(
        args,
        NAME,
        config=sz,
        data={
            "success": succ,
            "median_ratio": med,
            "final_ratio": ratios,
            "loss_curves": {
                t: {T: {c: r["loss"] for c, r in g.items()} for T, g in grid.items()} for t, grid in grids.items()
            },
            "measured_copy_baseline": base,
        },
        outcome=outcome,
        summary=summary,
        figures={"c8_lag.png": _figure(grids, succ, med, sz)},
        seeds=n_seeds,
    )
    return outcome


def memoryless_baseline(task_name: str, T: int, n: int = 4096, seed: int = 8) -> float:
    """The loss of the best memoryless predictor, **measured** on ``n`` sampled sequences.

    It may know the step t but not the inputs, so it predicts the empirical per-step
    target distribution p_t (copy: CE -mean log p_t(z)) or the mean target (adding: MSE
    = the variance of the target). Compared with the task's formula.
    """
    from gradpaths import tasks

    task = tasks.make(task_name, T)
    batch = task.sample(jax.random.key(seed), n)
    mask = np.asarray(batch.mask, float)
    if task.loss == "mse":
        z = np.asarray(batch.targets, float)[..., 0]
        mean_t = z.mean(0)
        return float(((z - mean_t) ** 2 * mask).sum() / mask.sum())
    z = np.asarray(batch.targets)
    p_t = np.stack([np.bincount(z[:, t], minlength=task.output_size) / n for t in range(z.shape[1])])
    logp = np.log(p_t[np.arange(z.shape[1])[None, :], z])
    return float(-(logp * mask).sum() / mask.sum())


def _copy_baselines(sz: dict) -> dict:
    """Measured memoryless copy CE against 10 ln 8 / (T+20) at the trained lags and at T = 100, 200."""
    lags = sorted({*sz["T"]["copy"], 100, 200})
    return {T: {"formula": 10 * np.log(8) / (T + 20), "measured": memoryless_baseline("copy", T)} for T in lags}


def _reproductions(grids, ratios, med, sz, base) -> tuple[C.Reproduction, ...]:
    reps = []
    n_seeds = sz["seeds"]
    if "adding" in grids:
        T = max(grids["adding"])
        rnn_r, lstm_r = med["adding"]["rnn"][-1], med["adding"]["lstm"][-1]
        decided = lstm_r < SUCCESS or rnn_r < STAY
        reps.append(
            C.Reproduction(
                "Arjovsky et al. 2016; Le et al. 2015 (adding)",
                f"T={T}, H={sz['H']['adding']}, Adam lr {sz['lr']:g}, clip 1, "
                f"{sz['steps']['adding']} steps, {n_seeds} seeds",
                "tanh RNN stays near MSE 0.167; LSTM (b_f=1) goes far below",
                f"median final MSE: rnn {C.fmt(rnn_r / 6)}, lstm {C.fmt(lstm_r / 6)}",
                (rnn_r >= STAY and lstm_r < SUCCESS) if decided else None,
            )
        )
    for T in (100, 200) if base else ():
        b = base[T]
        reps.append(
            C.Reproduction(
                "copy baseline 10·ln8/(T+20) [computed]",
                f"T={T}, best memoryless predictor measured on 4096 sequences",
                f"{b['formula']:.4f}",
                f"{b['measured']:.4f}",
                bool(abs(b["measured"] - b["formula"]) < 0.01 * b["formula"]),
            )
        )
    if "copy" in grids:
        T = max(grids["copy"])
        lstm_r = med["copy"]["lstm"][-1]
        reps.append(
            C.Reproduction(
                "Arjovsky et al. 2016 (copy)",
                f"T={T}, H={sz['H']['copy']}, {sz['steps']['copy']} steps, {n_seeds} seeds",
                "LSTM beats the memoryless baseline",
                f"LSTM median final CE = {C.fmt(lstm_r)} × baseline ({C.fmt(lstm_r * 10 * np.log(8) / (T + 20))})",
                True if lstm_r < STAY else None,
            )
        )
    return tuple(reps)


def _summary(sz, grids, succ, med) -> str:
    rows = []
    for t, grid in grids.items():
        for i, T in enumerate(grid):
            rows.append(
                f"| {t} | {T} | "
                + " | ".join(f"{succ[t][c][i]:.2f} ({C.fmt(med[t][c][i])})" for c in sz["cells"])
                + " |"
            )
    undecided = [t for t in grids if not any(np.any(np.asarray(succ[t][c]) > 0) for c in sz["cells"])]
    return (
        f"Every cell: H={sz['H']['adding']} (adding), {sz['H']['copy']} (copy), batch {sz['batch']}, "
        f"Adam lr {sz['lr']:g}, clip_by_global_norm(1), float32, "
        f"{sz['seeds']} seeds per point; steps {sz['steps']}. r = final loss / no-memory baseline "
        f"(mean over the last {sz['segment']} steps). Success: r < {SUCCESS}; "
        f"stays at the baseline: median r ≥ {STAY}. "
        "Tasks where no cell succeeds at any T decide nothing (too few steps), and the verdict ignores them"
        + (f": {', '.join(undecided)}." if undecided else ".")
        + "\n\n| task | T | "
        + " | ".join(f"{c}: success rate (median r)" for c in sz["cells"])
        + " |\n|---|---|"
        + "---|" * len(sz["cells"])
        + "\n"
        + "\n".join(rows)
    )


def _figure(grids, succ, med, sz):
    import matplotlib.pyplot as plt

    tasks_ = list(grids)
    fig, axes = plt.subplots(2, len(tasks_), figsize=(5.5 * len(tasks_), 7.5), squeeze=False)
    colors = {"rnn": "C3", "lstm": "C0", "gru": "C2"}
    for j, t in enumerate(tasks_):
        lags = list(grids[t])
        ax = axes[0, j]
        for k, c in enumerate(sz["cells"]):
            ax.plot(lags, np.asarray(succ[t][c]) + (k - 1) * 0.015, "o-", color=colors[c], label=c)
        ax.set_xscale("log")
        ax.set_xticks(lags, [str(x) for x in lags])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlim(min(lags) / 1.5, max(lags) * 1.5)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("lag T (steps)")
        ax.set_ylabel(f"success rate (final loss < {SUCCESS}×baseline)")
        ax.set_title(f"{t}: success rate over {sz['seeds']} seeds")
        ax.legend(fontsize=8)
        ax = axes[1, j]
        T = lags[-1]
        for c in sz["cells"]:
            loss = np.array(grids[t][T][c]["loss"], dtype=float) / grids[t][T][c]["baseline"]  # [seed, seg]
            steps = np.asarray(grids[t][T][c]["step"])
            ax.plot(steps, loss.T, color=colors[c], lw=0.6, alpha=0.5)
            ax.plot(steps, np.nanmedian(loss, 0), color=colors[c], lw=2, label=f"{c} (median)")
        ax.axhline(1.0, color="k", ls="--", lw=0.8, label="no-memory baseline")
        ax.axhline(SUCCESS, color="k", ls=":", lw=0.8, label=f"success threshold {SUCCESS}")
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("loss / no-memory baseline (segment mean)")
        ax.set_title(f"{t}, T={T}: training curves (thin: seeds)")
        ax.legend(fontsize=7)
    gated = [c for c in sz["cells"] if c != "rnn"]
    score = lambda t, i: sum(succ[t][c][i] for c in gated) - succ[t]["rnn"][i]
    best = {t: max(range(len(grids[t])), key=lambda i, t=t: score(t, i)) for t in tasks_}
    fig.suptitle(
        "C8 (success = final loss < 0.5×baseline): "
        + "; ".join(
            f"{t} T={list(grids[t])[i]}: "
            + ", ".join(f"{c} {succ[t][c][i]:.0%}" for c in sz["cells"])
            + f" (rnn median r={C.fmt(med[t]['rnn'][i])})"
            for t, i in best.items()
        ),
        fontsize=10,
    )
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    C.main(__import__(__name__))
