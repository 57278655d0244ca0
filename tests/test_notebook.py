"""Runs ``notebooks/quickstart.ipynb`` headless on the CPU at a tiny size: no cell may raise.

The notebook's cell tagged ``parameters`` holds its budgets. As papermill does, the test
inserts a cell right after it that overrides them with tiny values, and runs the notebook in a
kernel on this interpreter (a kernelspec written to a temporary JUPYTER_PATH, so a system-wide
``python3`` kernel cannot be picked up instead). jaxpg is importable here, so the notebook's
install cell skips itself (``JAXPG_SKIP_INSTALL`` makes sure of it).
"""

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"

TINY = {
    "SCALE": 1e-9,  # every budget falls to its floor: one update
    "NUM_SEEDS": 64,  # still 64 agents: one update each is cheap
    "SWEEP_LRS": [3e-4, 1e-3],
    "SWEEP_SEEDS": 2,
}


def with_parameters(nb, values: dict):
    index = next(
        (i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])),
        None,
    )
    assert index is not None, "the notebook needs a cell tagged 'parameters'"
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, injected)
    return nb


def this_interpreter_kernel(tmp_path) -> str:
    name = "jaxpg-test"
    spec = tmp_path / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "jaxpg test",
                "language": "python",
            }
        )
    )
    return name


def outputs_text(nb) -> str:
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                texts.append(out["text"])
    return "".join(texts)


def count_images(nb) -> int:
    return sum(
        "image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", [])
    )


@pytest.mark.timeout(300)
def test_quickstart_notebook_runs_at_tiny_size(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("JAXPG_SKIP_INSTALL", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = with_parameters(nbformat.read(NOTEBOOK, as_version=4), TINY)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=this_interpreter_kernel(tmp_path),
        timeout=240,  # per cell
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError if any cell raises

    text = outputs_text(nb)
    assert "skipping the install" in text
    assert "No TPU or GPU" in text  # says so clearly on the CPU
    for run in (
        "PPO CartPole",
        "PPO Breakout-MinAtar",
        "64 CartPole agents",
        "lr sweep (2 x 2 seeds)",
    ):
        assert run in text and "steps/s" in text, run
    assert count_images(nb) >= 4  # CartPole, Breakout, 64 seeds, the sweep


def test_notebook_has_no_stored_outputs_and_a_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "SCALE" in tagged[0].source
