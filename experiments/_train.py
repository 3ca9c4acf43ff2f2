"""Training over seeds for the claim experiments: one config builder, one hash, resumable points.

A *point* is one compiled ``TrainConfig`` run for ``arms × seeds`` runs at once. Arms
differ only in what ``init`` does to a run's initial state (its forget-gate bias, its
h-detach p, a scale of W_h), so all arms share one compiled trainer; run r = (arm i,
seed j) starts from ``init(key_j, *per_run[r])`` with the same ``key_j`` in every arm
(paired seeds). Each point is written atomically to ``DIR/_points/<task>-T<T>-<cell>-<hash>.json``
when it finishes; the hash covers the config, the arms, the per-run values, the seeds
and the library's source, so two experiments that ask for the same point share it and
a changed config or library never reuses a stale file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import _common as C
from experiments import _stats as S
from gradpaths import train as gt


def config(args: C.Args, **fields) -> gt.TrainConfig:
    """The experiments' TrainConfig: Adam lr 1e-2, clip_by_global_norm(1), float32 unless --float64."""
    base = {"lr": 1e-2, "clip_norm": 1.0, "dtype": "float64" if args.float64 else "float32"}
    return gt.TrainConfig(**(base | fields))


def config_hash(*parts: Any) -> str:
    """12 hex digits of sha256 over the JSON of ``parts`` (configs as dicts, arrays as lists)."""
    text = json.dumps(C.to_jsonable(list(parts)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def seed_keys(seeds: int, repeats: int = 1, base_seed: int = 0) -> jax.Array:
    """The same ``seeds`` keys for each of ``repeats`` arms: [repeats · seeds]."""
    keys = jax.random.split(jax.random.key(base_seed), seeds)
    return jax.random.wrap_key_data(jnp.tile(jax.random.key_data(keys), (repeats, 1)))


def point_path(args: C.Args, cfg: gt.TrainConfig, *extra) -> Path:
    tag = config_hash(dataclasses.asdict(cfg), C.library_version(), *extra)
    return Path(args.out) / "_points" / f"{cfg.task}-T{cfg.T}-{cfg.cell}-{tag}.json"


def train(
    args: C.Args,
    cfg: gt.TrainConfig,
    seeds: int,
    *,
    arms: Sequence[str] = ("",),
    init: Callable[[gt.Trainer], Callable] | None = None,
    per_run: Sequence[Any] = (),
    keep_params: bool = False,
) -> dict:
    """Trains ``len(arms) × seeds`` runs of ``cfg`` (cached; see the module docstring).

    Args:
      init: ``init(trainer) -> fn(key, *per_run_values) -> TrainState``; None: ``trainer.init``.
      per_run: arrays with a leading axis [len(arms) · seeds], arm-major.
      keep_params: also return the final parameters (for analyses after training).

    Returns {"config", "arms", "seeds", "steps" [K], "baseline", "metrics": {Metrics
    field: [R][K]}, "diverged_at": [R] (-1: never), "wall_s"} (+ "params").
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an int >= 1, got {seeds!r}")
    n_runs = len(arms) * seeds
    for a in per_run:
        if np.shape(a)[0] != n_runs:
            raise ValueError(f"per_run arrays need a leading axis of {n_runs} (arms × seeds), got {np.shape(a)}")
    path = point_path(args, cfg, list(arms), seeds, [np.asarray(a).tolist() for a in per_run], keep_params)

    def compute():
        C.progress(f"  {path.stem}: {len(arms)} arm(s) × {seeds} seeds × {cfg.steps} steps")
        t0 = time.perf_counter()
        trainer = gt.make_trainer(cfg)
        fn = trainer.init if init is None else init(trainer)
        states = gt.over_seeds(fn)(seed_keys(seeds, len(arms)), *per_run)
        run_segment = gt.make_seeds(cfg).run_segment
        segments = []
        for _ in range(cfg.steps // cfg.segment):
            states, m = run_segment(states)
            segments.append(jax.device_get(m))
        metrics = {
            f: np.stack([np.asarray(getattr(m, f), float) for m in segments], axis=1) for f in gt.Metrics._fields
        }
        out = {
            "config": dataclasses.asdict(cfg),
            "arms": list(arms),
            "seeds": seeds,
            "steps": metrics.pop("step")[0],
            "baseline": float(metrics["baseline"][0, 0]),
            "metrics": metrics,
            "diverged_at": np.asarray(states.diverged_at),
            "wall_s": time.perf_counter() - t0,
        }
        if keep_params:
            out["params"] = states.params
        return out

    return C.cached(path, compute)


def load_params(tree, dtype) -> Any:
    """A point's cached parameters (JSON: dicts; nested lists for arrays; a list of layer dicts for a
    stack's tuple) as arrays of ``dtype``."""
    if isinstance(tree, dict):
        return {k: load_params(v, dtype) for k, v in tree.items()}
    if isinstance(tree, list) and tree and isinstance(tree[0], dict):
        return tuple(load_params(v, dtype) for v in tree)
    return jnp.asarray(tree, dtype)


def arm(record: dict, name: str = "", field: str = "loss") -> np.ndarray:
    """One arm's metric as floats [seeds, segments] (None -> NaN)."""
    i, n = record["arms"].index(name), record["seeds"]
    return np.array(record["metrics"][field][i * n : (i + 1) * n], dtype=float)


def diverged(record: dict, name: str = "") -> np.ndarray:
    """Per seed of one arm: did the run become non-finite?"""
    i, n = record["arms"].index(name), record["seeds"]
    return np.asarray(record["diverged_at"][i * n : (i + 1) * n]) >= 0


def final_ratio(record: dict, name: str = "") -> np.ndarray:
    """Per seed: last-segment loss / the task's no-memory baseline; NaN for a diverged seed."""
    r = arm(record, name)[:, -1] / record["baseline"]
    return np.where(diverged(record, name), np.nan, r)


def score(record: dict, name: str = "") -> np.ndarray:
    """Per seed: A = mean over segments of loss / baseline (the normalised area under the
    loss curve; lower trains faster, 1 = nothing learned). A diverged seed scores
    max(1, its arm's worst): no better than not learning."""
    rel = arm(record, name) / record["baseline"]
    a = np.where(diverged(record, name), np.nan, np.nanmean(rel, axis=1))
    return S.worst_fill(a, max(1.0, float(np.nanmax(a, initial=1.0))))


def solved(ratios, threshold: float) -> np.ndarray:
    """Per seed: final loss / baseline below ``threshold`` (a diverged seed, NaN, fails)."""
    r = np.asarray(ratios, float)
    return np.where(np.isfinite(r), r, np.inf) < threshold


def median_ratio(ratios) -> float:
    """Median final loss / baseline, a diverged seed counted as +inf."""
    r = np.asarray(ratios, float)
    return float(np.median(np.where(np.isfinite(r), r, np.inf)))


def bias_vectors(setting: str, n_h: int, seeds: int, dtype, chrono_T: int | None = None, seed: int = 7) -> jax.Array:
    """Initial LSTM biases b [seeds, 4H] of a setting: "b_f=<x>", or "chrono" (b_f ~ log U[1, T_max − 1],
    b_i = −b_f, drawn per seed; Tallec and Ollivier 2018) with T_max = ``chrono_T``."""
    import gradpaths as gp

    if setting == "chrono":
        cell = gp.lstm(n_h, chrono=chrono_T)
        return jax.jit(jax.vmap(lambda k: cell.init_bias(k, dtype)))(jax.random.split(jax.random.key(seed), seeds))
    if not setting.startswith("b_f="):
        raise ValueError(f"setting must be 'b_f=<number>' or 'chrono', got {setting!r}")
    b = gp.lstm(n_h, forget_bias=float(setting[4:])).init_bias(None, dtype)
    return jnp.broadcast_to(b, (seeds, b.shape[0]))


def start_from_bias(trainer: gt.Trainer):
    """``init(key, b)``: ``trainer.init(key)`` with the LSTM bias replaced by b [4H]. Adam's state
    is zeros whatever the initial values, so this equals the trainer of a config with that bias."""

    def init(key, b):
        state = trainer.init(key)
        return state._replace(params={**state.params, "cell": {**state.params["cell"], "b": b}})

    return init


def scale_recurrent(trainer: gt.Trainer):
    """``init(key, g)``: ``trainer.init(key)`` with W_h multiplied by g (W_h = g·W_h(g=1) for "gaussian")."""

    def init(key, g):
        s = trainer.init(key)
        cell = s.params["cell"]
        return s._replace(params={**s.params, "cell": {**cell, "W_h": cell["W_h"] * g.astype(cell["W_h"].dtype)}})

    return init
