"""The worked example notebook (examples/own_study.ipynb) runs top to bottom in a real Jupyter kernel
(nbclient + ipykernel): it writes its own module file, loads it, is refused a bad key, runs a smoke
sweep through cluster.api, and shows the results table and a report figure."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "own_study.ipynb"


def _kernelspec(folder: Path) -> str:
    """A kernel spec running this interpreter (the project's venv), found through JUPYTER_PATH."""
    spec = folder / "kernels" / "sweeps-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "sweeps test", "language": "python"}))
    return "sweeps-test"


def _outputs(nb) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


@pytest.mark.slow
def test_example_notebook_runs_in_a_real_kernel(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    kernel = _kernelspec(tmp_path / "jupyter")
    nb = nbformat.read(work / NOTEBOOK.name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name=kernel, resources={"metadata": {"path": str(work)}})
    client.execute()  # raises CellExecutionError (with the cell and traceback) if any cell fails

    outputs = _outputs(nb)
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "refused: 'hidden_dim' is not used by any pairing of notebook-cnn-vs-mlp" in text
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    table = next(h for h in html if "<table" in h and "val_acc" in h)  # the results DataFrame
    assert "notebook_cnn/edges" in table and "three_layer_mlp/edges" in table
    assert any("<pre" in h and "trials done" in h for h in html)  # the progress display, in the cell
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1  # report.figure(...)
    assert (work / "notebook_study.py").is_file() and (work / "mlflow.db").is_file()
    assert list((work / "reports").glob("*/accuracy_vs_data.png"))
