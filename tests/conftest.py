"""Test setup: x64 on so float64 is available; float32 tests pass float32 arrays explicitly
and check that float32 stays float32.

``GRADPATHS_TEST_X64=0`` runs with x64 off (float32 defaults); ``tests/test_lint.py``
runs the core float32 tests that way in a subprocess, so one ``pytest`` covers both.
A test module that sets ``STRICT_PROMOTION = True`` runs under
``jax_numpy_dtype_promotion="strict"`` (the engine's tests do).
"""

import os

import jax
import pytest

jax.config.update("jax_enable_x64", os.environ.get("GRADPATHS_TEST_X64", "1") != "0")


@pytest.fixture(autouse=True)
def _strict_promotion(request):
    if getattr(request.module, "STRICT_PROMOTION", False):
        with jax.numpy_dtype_promotion("strict"):
            yield
    else:
        yield
