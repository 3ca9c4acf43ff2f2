"""Resumable sweeps: a grid of training configs × seeds, one JSON file per finished point.

A point is one ``TrainConfig`` run for ``seeds`` seeds at once (``train.make_seeds``:
one jitted, device-sharded call per segment). When a point finishes, its record is
written to ``out/<name>.json`` atomically (a temp file in the same folder, then
``os.replace``), so an interrupted sweep leaves only whole files; running the sweep
again loads the finished points and runs only the rest. One tqdm bar counts the
training steps of the whole sweep.

Record fields: name, config (as a dict), seeds, base_seed, metrics (each Metrics field
as [seeds][segments], NaN written as null), final (each field's last segment per
seed), diverged (per seed: the step, or null), wall_s, devices.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from experiments import _common as C
from experiments import _distributed as D
from experiments._train import config_hash
from gradpaths import train as gt


def grid(base: gt.TrainConfig, **axes: Sequence[Any]) -> dict[str, gt.TrainConfig]:
    """Every combination of ``axes`` applied to ``base``, named "key=value,key=value"."""
    fields = {f.name for f in dataclasses.fields(gt.TrainConfig)}
    unknown = sorted(set(axes) - fields)
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s) {unknown}; fields are {sorted(fields)}")
    names = list(axes)
    points = {}
    for values in itertools.product(*(axes[n] for n in names)):
        change = dict(zip(names, values))
        name = ",".join(f"{k}={v}" for k, v in change.items()) or "base"
        points[name] = dataclasses.replace(base, **change)
    return points


def point_name(config: gt.TrainConfig) -> str:
    """A stable short name for a config: ``_train.config_hash`` of its fields (the experiments' one hash)."""
    return "cfg-" + config_hash(dataclasses.asdict(config))


def _file_name(name: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_.=," else "_" for ch in name)
    return safe + ".json"


def write_json_atomic(path: Path, record: Mapping[str, Any]) -> None:
    """Writes ``record`` as strict JSON (NaN refused) with ``_common.atomic_write``."""
    C.atomic_write(path, json.dumps(record, indent=1, allow_nan=False))


def run_point(
    config: gt.TrainConfig, seeds: int, base_seed: int, on_segment: Callable[[int], None], per_device: str | None = None
) -> dict:
    """Trains ``seeds`` seeds of ``config`` segment by segment; returns the record (without name)."""
    # Many processes: each trains its own points on its own devices (jax.devices() spans them all).
    devices = jax.local_devices() if jax.process_count() > 1 else None
    runner = gt.make_seeds(config, per_device=per_device, devices=devices)
    keys = jax.random.split(jax.random.key(base_seed), seeds)
    start = time.perf_counter()
    states = runner.init(keys)
    segments = []
    for _ in range(config.steps // config.segment):
        states, metrics = runner.run_segment(states)
        segments.append(jax.device_get(metrics))
        on_segment(config.segment)
    stacked = {f: np.stack([getattr(m, f) for m in segments], axis=1) for f in gt.Metrics._fields}
    diverged_at = np.asarray(states.diverged_at)
    return {
        "config": C.to_jsonable(dataclasses.asdict(config)),  # as JSON holds it (tuples as lists)
        "seeds": seeds,
        "base_seed": base_seed,
        "metrics": {f: C.to_jsonable(v) for f, v in stacked.items()},
        "final": {f: C.to_jsonable(v[:, -1]) for f, v in stacked.items()},
        "diverged": [int(d) if d >= 0 else None for d in diverged_at],
        "wall_s": time.perf_counter() - start,
        "devices": [str(d) for d in (devices or jax.devices())],
    }


def run(
    points: Mapping[str, gt.TrainConfig] | Sequence[gt.TrainConfig],
    out: str | Path,
    *,
    seeds: int = 4,
    base_seed: int = 0,
    progress: bool = True,
    per_device: str | None = None,
) -> dict[str, dict]:
    """Runs every point not already on disk under ``out``; returns all records by name.

    Args:
      points: {name: config}, or a sequence of configs (named by ``point_name``).
      out: folder for ``<name>.json`` (created if missing).
      seeds: seeds per point, run together. base_seed: seed i uses split(key(base_seed))[i].
      progress: show a tqdm bar over the training steps of the points still to run.
      per_device: how each device runs its seeds: "vmap", "map", or None for the
        platform's default (``train.over_seeds``).
    """
    if not isinstance(points, Mapping):
        points = {point_name(c): c for c in points}
    for name, config in points.items():
        if not isinstance(config, gt.TrainConfig):
            raise TypeError(f"point {name!r} must be a TrainConfig, got {type(config).__name__}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an int >= 1, got {seeds!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    D.initialize_from_env()  # many processes (experiments/_distributed.py): each runs its share of the points
    mine = set(D.my_share(list(points)))
    records, todo = {}, {}
    for name, config in points.items():
        done = _load(out / _file_name(name), config, seeds, base_seed)
        if done is None and name in mine:
            todo[name] = config
        elif done is not None:
            records[name] = done
    total, desc = sum(c.steps for c in todo.values()), f"sweep ({len(todo)}/{len(points)} to run)"
    try:
        with tqdm(total=total, unit="step", desc=desc, disable=not progress) as bar:
            for name, config in todo.items():
                bar.set_postfix_str(name[:40])
                record = {"name": name, **run_point(config, seeds, base_seed, bar.update, per_device)}
                write_json_atomic(out / _file_name(name), record)
                records[name] = record
    finally:
        if jax.process_count() > 1:  # wait for every process's share, even when this one failed,
            D.barrier("sweep")  # so that the others report its missing points instead of waiting
    if jax.process_count() > 1:  # then every process reads all points from disk
        for name, config in points.items():
            records[name] = _load(out / _file_name(name), config, seeds, base_seed)
            if records[name] is None:
                raise RuntimeError(
                    f"point {name!r} is not under {out} after every process finished: its process failed "
                    "(see its output), or the processes do not share the output folder"
                )
    return {name: records[name] for name in points}


def _load(path: Path, config: gt.TrainConfig, seeds: int, base_seed: int) -> dict | None:
    """The finished record at ``path`` if it is for this config and seeds; else None."""
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = (
        record.get("config") == json.loads(json.dumps(dataclasses.asdict(config)))
        and record.get("seeds") == seeds
        and record.get("base_seed") == base_seed
    )
    return record if same else None


def summary(records: Mapping[str, dict]) -> list[dict]:
    """One row per point: final loss (median over non-diverged seeds), baseline, diverged count."""
    rows = []
    for name, rec in records.items():
        final = [v for v, d in zip(rec["final"]["loss"], rec["diverged"]) if d is None and v is not None]
        rows.append(
            {
                "name": name,
                "loss": float(np.median(final)) if final else math.nan,
                "baseline": rec["final"]["baseline"][0],
                "diverged": sum(d is not None for d in rec["diverged"]),
                "seeds": rec["seeds"],
            }
        )
    return rows
