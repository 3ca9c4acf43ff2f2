"""Test setup: float64 available everywhere; float32 tests pass float32 arrays explicitly.

GRADPATHS_X64=0 runs the suite with x64 off (float64 tests then skip).
"""

import os

# XLA:CPU's multi-threaded Eigen pool can deadlock on vmapped scans; see experiments/_common.py.
if "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()

import jax  # noqa: E402
import pytest

X64 = os.environ.get("GRADPATHS_X64", "1") != "0"
jax.config.update("jax_enable_x64", X64)


def pytest_collection_modifyitems(config, items):
    if X64:
        return
    skip = pytest.mark.skip(reason="float64 needs GRADPATHS_X64=1")
    for item in items:
        if "float64" in item.name:
            item.add_marker(skip)
