"""Test setup: x64 on so float64 is available; float32 tests pass float32 arrays explicitly
and check that float32 stays float32.

``GRADPATHS_TEST_X64=0`` runs with x64 off (float32 defaults); ``tests/test_lint.py``
runs the core float32 tests that way in a subprocess, so one ``pytest`` covers both.
Every test runs under ``jax_numpy_dtype_promotion="strict"``: no implicit dtype promotion in
gradpaths or in the tests. A module that needs standard promotion (an external package's own
code mixing dtypes) sets ``STRICT_PROMOTION = False`` and says why.

XLA flags for the test processes (and the subprocesses they start), unless the user set
``XLA_FLAGS``: one XLA:CPU host device, since each pytest-xdist worker already has a core
of its own (importing ``experiments`` would otherwise give each worker one device per core,
and two workers would share two cores four ways; tests of multi-device runs start
subprocesses with their own device count); and cheap codegen, because at the tests' tiny
shapes compiling is most of the time and run time hardly matters: optimisation level 0
halved the compiles, and XLA:CPU's older (non-MLIR) fusion emitters cut them by another
40–75 % (a cell's test bundle: mamba 3.9 → 1.8 s, LSTM 1.5 → 1.1 s; 40 eager ops 8.3 → 5.1 s).
"""

import os

if not os.environ.get("XLA_FLAGS"):
    os.environ["XLA_FLAGS"] = (
        "--xla_force_host_platform_device_count=1"
        " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
        " --xla_cpu_use_fusion_emitters=false"
    )

import jax  # noqa: E402  (after XLA_FLAGS)
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.experimental.compilation_cache import compilation_cache  # noqa: E402

jax.config.update("jax_enable_x64", os.environ.get("GRADPATHS_TEST_X64", "1") != "0")


@pytest.fixture(autouse=True)
def _strict_promotion(request):
    if getattr(request.module, "STRICT_PROMOTION", True):
        with jax.numpy_dtype_promotion("strict"):
            yield
    else:
        yield


# XLA:CPU maps memory for every compiled executable. A worker that keeps every test's
# executables passes Linux's vm.max_map_count (65,530 by default: half of test_core alone
# made 22,000 maps) and the next compile segfaults: CI and two local runs lost a worker
# that way. Past this count the compiled functions are dropped (they recompile on use).
MAX_MAPS = 30_000


def _maps() -> int:
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: no such limit to stay under
        return 0


@pytest.fixture(autouse=True)
def _fresh_rng(request):
    """A test module's ``RNG`` restarts at every test, so a test's synthetic draws do not
    depend on which tests ran before it on its worker: pytest-xdist hands tests out in a
    varying order, and CI once drew a sample that flipped a verdict test."""
    if hasattr(request.module, "RNG"):
        request.module.RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _bounded_process_state():
    """After each test: drop compiled executables past MAX_MAPS, and turn off JAX's
    persistent compilation cache if the test turned it on (an experiment's ``main`` run
    in-process does, in a temporary folder)."""
    yield
    if jax.config.jax_compilation_cache_dir is not None:
        jax.config.update("jax_compilation_cache_dir", None)
        compilation_cache.reset_cache()
    if _maps() > MAX_MAPS:
        jax.clear_caches()
