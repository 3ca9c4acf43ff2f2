"""Many machines: a sweep run by 2 local processes on jax.distributed equals the one-process run.

Each process is a subprocess under a timeout (a hang fails with the processes' output,
it does not stall the suite); the coordinator listens on 127.0.0.1 at a free port.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from experiments import _distributed as distributed

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 480  # all processes together; about 14 s of CPU each, but minutes of wall time on loaded cores

# A child: a tiny 2-point × 2-seed sweep. It records which points it trained itself and
# dumps what sweep.run returned (less wall time and device names, which differ by run).
CHILD = textwrap.dedent(
    """
    import json, sys
    from experiments import _distributed as distributed
    from experiments import sweep
    from gradpaths import train

    assert distributed.initialize_from_env() == (len(sys.argv) > 2)
    import jax

    base = train.TrainConfig(task="adding", T=5, cell="lstm", hidden_size=4, recurrent_init="gaussian",
                             batch_size=4, steps=4, segment=2)
    points = sweep.grid(base, lr=[1e-2, 3e-2])
    trained = []
    real = sweep.run_point
    def run_point(config, *a):
        if sys.argv[2:] == ["fail"] and jax.process_index() == 1:
            raise RuntimeError("process 1's share fails")
        trained.append(config.lr)
        return real(config, *a)
    sweep.run_point = run_point
    records = sweep.run(points, sys.argv[1], seeds=2, progress=False)
    for r in records.values():
        r.pop("wall_s"), r.pop("devices")
    print("RESULT " + json.dumps({"process": jax.process_index(), "count": jax.process_count(),
                                  "trained": trained, "records": records}), flush=True)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADPATHS_", "SLURM_", "JAX_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(GRADPATHS_INIT_TIMEOUT_S="240", GRADPATHS_BARRIER_TIMEOUT_S="360", **extra)
    return env


def _start(out: Path, *flag: str, **extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out), *flag],
        cwd=ROOT,
        env=_env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(procs: dict[str, subprocess.Popen]) -> dict[str, dict]:
    """Waits for every process (one shared deadline); kills all on a hang and fails with their output."""
    deadline = time.monotonic() + TIMEOUT_S
    outputs, hung = {}, []
    for label, p in procs.items():
        try:
            outputs[label], _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            hung.append(label)
    for label in hung:
        procs[label].kill()
        outputs[label] = procs[label].communicate()[0]
    report = "\n".join(f"--- {k} (rc {procs[k].returncode}):\n{v[-3000:]}" for k, v in outputs.items())
    if hung:
        pytest.fail(f"{hung} did not finish within {TIMEOUT_S} s (a hang in jax.distributed?)\n{report}")
    failed = [k for k, p in procs.items() if p.returncode != 0]
    if failed:
        pytest.fail(f"{failed} failed\n{report}")
    results = {}
    for label, text in outputs.items():
        lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
        assert lines, f"{label} printed no result\n{report}"
        results[label] = json.loads(lines[-1][len("RESULT ") :])
    return results


def test_two_processes_split_the_points_and_equal_one_process(tmp_path):
    port = _free_port()
    procs = {
        "single": _start(tmp_path / "single"),
        **{
            f"process {i}": _start(
                tmp_path / "multi",
                "distributed",
                GRADPATHS_COORDINATOR=f"127.0.0.1:{port}",
                GRADPATHS_NUM_PROCESSES="2",
                GRADPATHS_PROCESS_ID=str(i),
            )
            for i in range(2)
        },
    }
    res = _finish(procs)
    single, p0, p1 = res["single"], res["process 0"], res["process 1"]
    assert (single["count"], p0["count"], p1["count"]) == (1, 2, 2)
    assert (p0["process"], p1["process"]) == (0, 1)
    # Round-robin: process 0 trained the first point, process 1 the second; the one process both.
    assert single["trained"] == [1e-2, 3e-2]
    assert p0["trained"] == [1e-2] and p1["trained"] == [3e-2]
    # Every process returns all points, read from disk, equal to the one-process run bit for bit.
    assert list(single["records"]) == ["lr=0.01", "lr=0.03"]
    assert p0["records"] == single["records"] and p1["records"] == single["records"]
    assert sorted(f.name for f in (tmp_path / "multi").iterdir()) == ["lr=0.01.json", "lr=0.03.json"]


def test_a_failed_share_fails_every_process_at_once(tmp_path):
    """Process 1's point raises: it still reaches the barrier, so process 0 reports the missing
    point instead of waiting out the barrier's timeout."""
    port = _free_port()
    env = dict(GRADPATHS_COORDINATOR=f"127.0.0.1:{port}", GRADPATHS_NUM_PROCESSES="2")
    procs = {f"process {i}": _start(tmp_path, "fail", GRADPATHS_PROCESS_ID=str(i), **env) for i in range(2)}
    with pytest.raises(pytest.fail.Exception) as failed:
        _finish(procs)
    text = str(failed.value)
    assert "did not finish" not in text, text
    assert "process 1's share fails" in text and "'lr=0.03' is not under" in text, text
    assert [f.name for f in tmp_path.iterdir() if f.suffix == ".json"] == ["lr=0.01.json"]


def test_one_process_without_the_environment(monkeypatch):
    for var in ("GRADPATHS_COORDINATOR", "GRADPATHS_NUM_PROCESSES", "GRADPATHS_PROCESS_ID", "GRADPATHS_DISTRIBUTED"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert not distributed.requested()
    assert distributed.initialize_from_env() is False
    assert distributed.my_share(["a", "b", "c"]) == ["a", "b", "c"]
    distributed.barrier("nothing to wait for")  # one process: returns at once
    monkeypatch.setenv("SLURM_JOB_ID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert not distributed.requested()  # a one-task SLURM job stays one process
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert distributed.requested()


def test_partial_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("GRADPATHS_COORDINATOR", "127.0.0.1:1")
    monkeypatch.delenv("GRADPATHS_NUM_PROCESSES", raising=False)
    monkeypatch.delenv("GRADPATHS_PROCESS_ID", raising=False)
    with pytest.raises(ValueError, match="GRADPATHS_NUM_PROCESSES"):
        distributed.initialize_from_env()
