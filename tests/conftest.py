"""Test setup: x64 on, so float64 is available; float32 tests pass float32 arrays
explicitly and check that float32 stays float32."""

import os

# XLA:CPU's multi-threaded Eigen pool can deadlock on vmapped scans; see experiments/_common.py.
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
