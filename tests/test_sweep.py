"""Sweeps: atomic per-point JSON, resume without redoing finished points, divergence recorded."""

import dataclasses
import json

import jax
import pytest

from experiments import sweep
from gradpaths import train

# The same small config as tests/test_train.py, so its compiled functions are reused.
SMALL = train.TrainConfig(
    task="adding", T=6, cell="lstm", hidden_size=4, recurrent_init="gaussian", batch_size=4, steps=4, segment=2, lr=1e-2
)


def test_real_point_written_then_skipped(tmp_path, monkeypatch):
    records = sweep.run({"small": SMALL}, tmp_path, seeds=3, progress=False)
    path = tmp_path / "small.json"
    on_disk = json.loads(path.read_text())
    assert on_disk == records["small"]
    assert train.TrainConfig(**on_disk["config"]) == SMALL
    assert len(on_disk["metrics"]["loss"]) == 3 and len(on_disk["metrics"]["loss"][0]) == 2
    assert on_disk["diverged"] == [None, None, None]
    assert on_disk["final"]["step"] == [4, 4, 4]
    assert all(v is None for v in on_disk["final"]["highway_share"])  # NaN (never probed) -> null
    calls = []
    monkeypatch.setattr(sweep, "run_point", lambda *a: calls.append(a))
    again = sweep.run({"small": SMALL}, tmp_path, seeds=3, progress=False)
    assert calls == [] and again == records
    rows = sweep.summary(again)
    assert rows[0]["diverged"] == 0 and rows[0]["baseline"] == pytest.approx(1 / 6)


def _fake_point(calls, fail_on=None):
    def run_point(config, seeds, base_seed, on_segment, per_device):
        calls.append(config.lr)
        if len(calls) == fail_on:
            raise KeyboardInterrupt
        for _ in range(config.steps // config.segment):
            on_segment(config.segment)
        return {
            "config": dataclasses.asdict(config),
            "seeds": seeds,
            "base_seed": base_seed,
            "lr": config.lr,
            "diverged": [None] * seeds,
        }

    return run_point


def test_interrupted_sweep_resumes_without_redoing(tmp_path, monkeypatch):
    points = sweep.grid(SMALL, lr=[1e-3, 1e-2, 1e-1])
    assert list(points) == ["lr=0.001", "lr=0.01", "lr=0.1"]
    calls = []
    monkeypatch.setattr(sweep, "run_point", _fake_point(calls, fail_on=2))
    with pytest.raises(KeyboardInterrupt):
        sweep.run(points, tmp_path, seeds=2, progress=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr=0.001.json"]  # no temp file left behind
    calls.clear()
    monkeypatch.setattr(sweep, "run_point", _fake_point(calls))
    records = sweep.run(points, tmp_path, seeds=2, progress=False)
    assert calls == [1e-2, 1e-1]
    assert [r["lr"] for r in records.values()] == [1e-3, 1e-2, 1e-1]
    calls.clear()
    sweep.run(points, tmp_path, seeds=3, progress=False)  # other seeds: a different point, rerun
    assert calls == [1e-3, 1e-2, 1e-1]


def test_changed_config_under_the_same_name_is_rerun(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sweep, "run_point", _fake_point(calls))
    sweep.run({"p": SMALL}, tmp_path, seeds=1, progress=False)
    sweep.run({"p": dataclasses.replace(SMALL, lr=0.5)}, tmp_path, seeds=1, progress=False)
    assert calls == [1e-2, 0.5]
    assert json.loads((tmp_path / "p.json").read_text())["lr"] == 0.5


def test_unnamed_points_get_stable_names(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sweep, "run_point", _fake_point(calls))
    records = sweep.run([SMALL], tmp_path, seeds=1, progress=False)
    assert list(records) == [sweep.point_name(SMALL)]
    assert sweep.point_name(SMALL) == sweep.point_name(dataclasses.replace(SMALL))
    assert sweep.point_name(SMALL) != sweep.point_name(dataclasses.replace(SMALL, lr=0.5))


def test_diverged_seeds_are_recorded(tmp_path):
    diverging = train.TrainConfig(
        task="adding", T=6, cell="irnn", hidden_size=4, batch_size=4, steps=4, segment=2, optimizer="sgd", lr=1e6
    )
    rec = sweep.run({"boom": diverging}, tmp_path, seeds=3, progress=False)["boom"]
    assert all(isinstance(d, int) and 0 <= d < 4 for d in rec["diverged"])
    assert rec["final"]["diverged"] == [True, True, True]
    for at, loss in zip(rec["diverged"], rec["final"]["loss"]):
        assert (loss is None) == (at <= 2)  # the last segment (steps 2, 3) had no healthy step
    assert sweep.summary({"boom": rec})[0]["diverged"] == 3


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "x.json"
    sweep.write_json_atomic(path, {"a": 1})
    with pytest.raises(ValueError):
        sweep.write_json_atomic(path, {"a": float("nan")})  # strict JSON refuses NaN
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda d: sweep.run({"a": {"lr": 1}}, d), TypeError, "TrainConfig"),
        (lambda d: sweep.run({"a": SMALL}, d, seeds=0), ValueError, "seeds"),
        (lambda d: sweep.grid(SMALL, learning_rate=[1.0]), ValueError, "unknown TrainConfig field"),
    ],
)
def test_bad_inputs(tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(tmp_path)


def test_keys_follow_base_seed():
    a = jax.random.split(jax.random.key(0), 3)
    b = jax.random.split(jax.random.key(0), 3)
    assert (jax.random.key_data(a) == jax.random.key_data(b)).all()
