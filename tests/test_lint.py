"""Strict CI inside the one pytest command: ruff (lint and format) and the core tests with x64 off."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff(*args):
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_ruff_check():
    out = _ruff("check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format():
    out = _ruff("format", "--check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_core_float32_with_x64_off():
    """The float32 core tests again with jax_enable_x64 off: float32 defaults, no silent float64."""
    env = {**os.environ, "GRADPATHS_TEST_X64": "0"}
    cells = ("lstm", "gru", "mingru", "readme", "stack")  # fast path, generic, highway-only, user's, stack
    some = " or ".join([*(f"[{c}-float32" for c in cells), "jit_and_vmap"])
    cmd = [sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider",
           "tests/test_core.py", "tests/test_engine.py", "-k", some]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout
