"""notebooks/attention.ipynb, run top to bottom in a real Jupyter kernel as a learner's Run All
would, on a run the suite trained; then its two explorers, as a notebook page shows them side by
side, in a real browser: each works and leaves the other alone."""

from __future__ import annotations

import os
import re

import pytest
from helpers import ROOT
from test_explorer import CHROMIUM, needs_browser

pytestmark = pytest.mark.e2e

NOTEBOOK = ROOT / "notebooks" / "attention.ipynb"


@pytest.fixture(scope="module")
def executed(tiny_run):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    previous = os.environ.get("CHARGPT_RUN")
    os.environ["CHARGPT_RUN"] = str(tiny_run)  # the kernel inherits it
    try:
        client = nbclient.NotebookClient(
            notebook, timeout=300, kernel_name="python3",
            resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        )  # fmt: skip
        client.execute()  # raises on the first cell that fails
    finally:
        if previous is None:
            del os.environ["CHARGPT_RUN"]
        else:
            os.environ["CHARGPT_RUN"] = previous
    return notebook


def outputs(notebook, kind: str) -> list:
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "stream" and output.output_type == "stream":
                found.append(output.text)
            elif kind in output.get("data", {}):
                found.append(output.data[kind])
    return found


def test_the_notebook_runs_top_to_bottom_and_checks_the_models_attention(executed):
    printed = "".join(outputs(executed, "stream"))
    assert "the same as the loop: True" in printed
    assert "the same weights: True | the same average: True" in printed
    assert "layer 0 is the formula: True" in printed
    assert len(outputs(executed, "image/png")) == 1  # the last layer's picture


def test_the_notebooks_explorers_are_inline_each_with_an_id_of_its_own(executed):
    pages = outputs(executed, "text/html")
    assert len(pages) == 2
    ids = [re.search(r'<div class="explorer" id="([\w-]+)">', page).group(1) for page in pages]
    assert ids[0] != ids[1]
    assert all("<html" not in page and "<script src" not in page for page in pages)


@needs_browser
def test_two_explorers_on_one_page_work_and_leave_each_other_alone(executed, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    pages = outputs(executed, "text/html")
    page_file = tmp_path / "notebook.html"
    page_file.write_text("<!DOCTYPE html><meta charset='utf-8'><body>" + "".join(pages))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())
        first, second = page.locator(".explorer").nth(0), page.locator(".explorer").nth(1)
        assert first.locator("[data-role=text] span.ch").count() == 6 + 80  # ROMEO: and more
        assert second.locator("[data-role=text] span.ch").count() > 40
        before = second.locator("[data-role=neuron-head]").inner_text()
        first.locator('[data-role=text] span.ch[data-pos="3"]').hover()
        assert "query t = 3" in first.locator("[data-role=neuron-head]").inner_text()
        assert second.locator("[data-role=neuron-head]").inner_text() == before  # untouched
        assert errors == []
        browser.close()
