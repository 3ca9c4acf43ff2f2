"""``import gradpaths`` stays light: plotting and the optional frameworks load on use."""

import subprocess
import sys

import pytest

import gradpaths as gp

HEAVY = ("matplotlib", "torch", "flax", "sklearn")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_import_gradpaths_leaves_heavy_packages_out():
    loaded = _modules_after("import gradpaths, gradpaths.interop")
    assert "gradpaths" in loaded
    assert not loaded & set(HEAVY), f"import gradpaths imported {sorted(loaded & set(HEAVY))}"


def test_plots_load_on_first_use():
    loaded = _modules_after("import gradpaths as gp\ngp.plots.hop_curves")
    assert {"gradpaths.plots", "matplotlib"} <= loaded


def test_unknown_attribute_raises():
    assert callable(gp.plots.hop_curves)
    with pytest.raises(AttributeError, match="no_such_name"):
        gp.no_such_name  # noqa: B018
