"""Many machines on JAX's own distributed runtime: start it from the environment, share work, wait.

A sweep that outgrows one machine runs as N processes (one per machine, or one per
accelerator). Each process calls ``initialize_from_env()`` before anything else touches
JAX, takes ``my_share(points)`` (round-robin by ``jax.process_index()``), computes and
writes those points, then waits at ``barrier(...)`` for every process to finish; after
it, every process reads all points back from the shared output folder. No array ever
crosses processes, so nothing here needs cross-process collectives; JAX 0.10's CPU
default (gloo) is set explicitly anyway, for user code that does use them.

The environment that turns it on (otherwise everything here is a no-op, one process):

- ``GRADPATHS_COORDINATOR=host:port GRADPATHS_NUM_PROCESSES=N GRADPATHS_PROCESS_ID=i``:
  explicit, for any launcher (process 0 serves the coordinator at host:port);
- SLURM with more than one task (``srun``): ``jax.distributed.initialize()`` reads
  SLURM's variables itself;
- ``GRADPATHS_DISTRIBUTED=1``: ``jax.distributed.initialize()`` with no arguments, for
  the other clusters JAX detects (Open MPI, Kubernetes/JobSet, Cloud TPU pods, ...).

``GRADPATHS_INIT_TIMEOUT_S`` (default 300) bounds the wait for all processes to
connect; ``GRADPATHS_BARRIER_TIMEOUT_S`` (default 86400) bounds the wait at a barrier
for the slowest process's share. A process that crashes (killed, out of memory) is noticed
by the coordination service's heartbeats within about 100 s: the others' barrier fails and
the runtime ends them. A process whose Python code raises stays connected, so the caller
must still reach the barrier (``sweep.run`` does, in a ``finally``) for the others to go on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TypeVar

import jax

T = TypeVar("T")

_EXPLICIT = ("GRADPATHS_COORDINATOR", "GRADPATHS_NUM_PROCESSES", "GRADPATHS_PROCESS_ID")
_barriers = 0


def _slurm_tasks() -> int:
    """SLURM's task count for this step (1 outside SLURM or for a one-task job)."""
    for var in ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 1


def requested() -> bool:
    """Whether the environment asks for a multi-process run."""
    return (
        any(v in os.environ for v in _EXPLICIT)
        or os.environ.get("GRADPATHS_DISTRIBUTED", "") not in ("", "0")
        or ("SLURM_JOB_ID" in os.environ and _slurm_tasks() > 1)
    )


def initialize_from_env() -> bool:
    """Starts ``jax.distributed`` when the environment asks for it; returns whether it is running.

    Idempotent. Must run before anything initialises a JAX backend (``jax.devices()``,
    any computation); a clear error says so otherwise.
    """
    if jax.distributed.is_initialized():
        return True
    if not requested():
        return False
    kwargs: dict = {"initialization_timeout": int(float(os.environ.get("GRADPATHS_INIT_TIMEOUT_S", "300")))}
    if any(v in os.environ for v in _EXPLICIT):
        missing = [v for v in _EXPLICIT if not os.environ.get(v)]
        if missing:
            raise ValueError(f"multi-process run: {', '.join(_EXPLICIT)} must all be set; missing {missing}")
        kwargs.update(
            coordinator_address=os.environ["GRADPATHS_COORDINATOR"],
            num_processes=int(os.environ["GRADPATHS_NUM_PROCESSES"]),
            process_id=int(os.environ["GRADPATHS_PROCESS_ID"]),
        )
    if jax.config.jax_cpu_collectives_implementation is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as e:
        if "before any JAX" in str(e) or "backend" in str(e):
            raise RuntimeError(
                "multi-process run requested by the environment, but JAX was already in use in this "
                "process: call experiments._distributed.initialize_from_env() first thing "
                f"(before jax.devices() or any computation). JAX said: {e}"
            ) from e
        raise
    return True


def my_share(items: Sequence[T]) -> list[T]:
    """The items this process owns: every ``process_count()``-th, from ``process_index()``.

    Every process must pass the same items in the same order. One process: all of them.
    """
    return list(items)[jax.process_index() :: jax.process_count()]


def barrier(name: str, timeout_s: float | None = None) -> None:
    """Returns once every process has reached this barrier; a no-op with one process.

    Every process must call the same barriers in the same order. Waits on the
    coordination service (no device collective), at most ``timeout_s`` seconds
    (default ``GRADPATHS_BARRIER_TIMEOUT_S`` or 86400), then raises ``TimeoutError``.
    """
    global _barriers
    if jax.process_count() == 1:
        return
    if timeout_s is None:
        timeout_s = float(os.environ.get("GRADPATHS_BARRIER_TIMEOUT_S", "86400"))
    _barriers += 1
    key = f"gradpaths:{name}:{_barriers}"
    from jax._src import distributed as _jd  # the runtime's client: JAX's own serialization waits on it too

    client = getattr(getattr(_jd, "global_state", None), "client", None)
    if client is None or not hasattr(client, "wait_at_barrier"):
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(key)  # a device collective; no timeout of its own
        return
    start = time.monotonic()
    try:
        client.wait_at_barrier(key, int(timeout_s * 1000))
    except Exception as e:  # the runtime raises its own error type (deadline exceeded, a peer failed)
        raise TimeoutError(
            f"process {jax.process_index()} of {jax.process_count()}: barrier {name!r} failed after "
            f"{time.monotonic() - start:.0f} s (timeout {timeout_s:g} s): a process died, hangs, or is still "
            f"computing (raise GRADPATHS_BARRIER_TIMEOUT_S for longer shares). Runtime said: {e}"
        ) from e
