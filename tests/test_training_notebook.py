"""notebooks/training.ipynb, run top to bottom in a real Jupyter kernel as a learner's Run All
would, made tiny by a cell after its parameter cell (as papermill injects one): it trains with the
live plot drawn into the notebook, stops a run from a hook, compares two learning rates on one
figure, samples from the better run and opens the explorer on it."""

from __future__ import annotations

import pytest
from helpers import ROOT

pytestmark = pytest.mark.e2e

NOTEBOOK = ROOT / "notebooks" / "training.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory, shakespeare_path, shakespeare):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    (where,) = [
        i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])
    ]
    out = tmp_path_factory.mktemp("notebook")
    tiny = nbformat.v4.new_code_cell(
        f'CONFIG = "tiny.yaml"\nSHORT_ITERS = 30\nOUT = Path({str(out)!r})\n'
        f"SETTINGS = dict(device='cpu', inspect=False, exact_max_chars=4000, "
        f"data_path={str(shakespeare_path)!r}, data_dir={str(shakespeare.data_dir)!r})"
    )
    notebook.cells.insert(where + 1, tiny)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )  # fmt: skip
    client.execute()  # raises on the first cell that fails
    return notebook, out


def outputs_of(cell, kind: str) -> list:
    found = []
    for output in cell.get("outputs", []):
        if kind == "stream" and output.output_type == "stream":
            found.append(output.text)
        elif kind in output.get("data", {}):
            found.append(output.data[kind])
    return found


def cell_with(notebook, text: str):
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and text in c.source]
    return cell


def test_the_live_plot_draws_into_the_notebook_as_the_run_trains(executed):
    notebook, out = executed
    cell = cell_with(notebook, "plot = LivePlot()")
    pictures = outputs_of(cell, "image/png")
    assert len(pictures) == 1  # one figure, redrawn in place
    assert [o.output_type for o in cell.outputs].count("display_data") == 1
    assert "<Run " in outputs_of(cell, "text/plain")[-1] and (out / "first" / "best.pt").exists()


def test_a_hook_stops_a_run_and_a_sweep_of_four_rates_shares_one_figure(executed):
    notebook, out = executed
    stopped = "".join(outputs_of(cell_with(notebook, "def stop_below"), "stream"))
    assert "stopping" in stopped and "stopped: StopTraining" in stopped
    compared = cell_with(notebook, "compare = LivePlot()")
    assert len(outputs_of(compared, "image/png")) == 1  # four runs, one figure
    printed = "".join(outputs_of(compared, "stream"))
    assert "| learning_rate | best_val |" in printed and "the better:" in printed
    for rate in ("0.0003", "0.001", "0.003", "0.01"):
        assert (out / "sweep" / f"learning_rate={rate}" / "last.pt").exists()


def test_the_run_samples_and_opens_in_the_explorer(executed):
    notebook, _ = executed
    printed = "".join(outputs_of(cell_with(notebook, "run.sample("), "stream"))
    assert "(ln 65 = 4.174)" in printed and "ROMEO:" in printed
    (page,) = outputs_of(cell_with(notebook, "explore(best.model"), "text/html")
    assert '<div class="explorer"' in page
