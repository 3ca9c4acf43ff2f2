"""examples/tour.ipynb runs from top to bottom, so it cannot rot."""

import pathlib
import re

import pytest

pytest.importorskip("torch")  # the tour imports a PyTorch nn.LSTM
pytest.importorskip("minGRU_pytorch")  # and a mingru-pytorch minGRU
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

TOUR = pathlib.Path(__file__).resolve().parents[1] / "examples" / "tour.ipynb"


def _texts(nb):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                yield out["text"]


def test_tour_notebook_executes():
    nb = nbformat.read(TOUR, as_version=4)
    for cell in nb.cells:  # drop the stored outputs: everything checked below is fresh
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    # kernel "python3" with argv "python": jupyter_client runs it with this interpreter (sys.executable)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(TOUR.parent)}}
    )
    client.execute()

    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 5
    text = "".join(_texts(nb))
    errors = [float(e) for e in re.findall(r"sums to jax.grad with relative error (\S+)", text)]
    assert len(errors) == 4 and max(errors) <= 1e-12
    (torch_err,) = re.findall(r"max \|gradpaths - torch\| on the outputs: (\S+)", text)
    assert float(torch_err) < 1e-5
    (mingru_err,) = re.findall(r"unroll vs the package's forward: max error (\S+)", text)
    assert float(mingru_err) < 1e-12
