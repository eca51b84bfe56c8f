"""notebooks/attention.ipynb, run top to bottom in a real Jupyter kernel as a learner's Run All
would, on a run the suite trained: what it prints at each step of the story (the values, √d_k,
several heads, the formula against every layer of the run), a picture per layer and a sentence per
head; then its two explorers, as a notebook page shows them side by side, in a real browser: each
works and leaves the other alone."""

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


@pytest.fixture(scope="module")
def run_config(tiny_run):
    from checkpoint import load_model

    return load_model(tiny_run)[0].config


def test_the_notebook_runs_top_to_bottom_from_an_average_to_one_head(executed):
    printed = "".join(outputs(executed, "stream"))
    assert "the same as the loop: True" in printed
    assert "the same weights: True | the same average: True" in printed
    assert "out[t] is the weighted sum of the values: True" in printed  # weights @ v


def test_the_notebook_measures_that_dividing_by_the_root_of_d_k_keeps_the_scores_variance_1(
    executed,
):
    printed = "".join(outputs(executed, "stream"))
    measured = re.findall(
        r"d_k = +(\d+): variance of q·k +([\d.]+), of q·k / √d_k ([\d.]+)", printed
    )
    assert [int(d_k) for d_k, _, _ in measured] == [8, 64, 512]
    for d_k, undivided, divided in measured:
        assert float(undivided) == pytest.approx(int(d_k), rel=0.1)  # var(q·k) ≈ d_k
        assert float(divided) == pytest.approx(1.0, abs=0.1)
        assert float(undivided) > float(divided)
    largest = re.search(
        r"largest weight, on average: ([\d.]+) undivided, ([\d.]+) divided", printed
    )
    assert float(largest[1]) > 0.8 > float(largest[2])  # undivided: nearly one-hot


def test_the_notebook_computes_several_heads_one_at_a_time_and_batched_alike(executed):
    printed = "".join(outputs(executed, "stream"))
    assert "the heads one at a time and all at once agree: True" in printed


def test_the_notebook_checks_the_formula_and_draws_a_picture_for_every_layer(executed, run_config):
    printed = "".join(outputs(executed, "stream"))
    checked = re.findall(r"layer (\d+) is the formula: (\w+)", printed)
    assert checked == [(str(layer), "True") for layer in range(run_config.n_layer)]
    assert len(outputs(executed, "image/png")) == run_config.n_layer  # one picture per layer


def test_the_notebook_says_what_each_head_of_the_run_reads_most(executed, run_config):
    printed = "".join(outputs(executed, "stream"))
    sentences = re.findall(
        r"^layer (\d+), head (\d+) (?:mostly reads|gives the most to) (.+?): "
        r"([\d.]+) of its weight on average\n    (.+)$",
        printed,
        re.MULTILINE,
    )
    heads = [(int(layer), int(head)) for layer, head, *_ in sentences]
    n_layer, n_head = run_config.n_layer, run_config.n_head
    assert heads == [(layer, head) for layer in range(n_layer) for head in range(n_head)]
    for _, _, most, weight, details in sentences:
        shares = {name: float(w) for name, w in re.findall(r"([a-z ]+?) ([\d.]+)(?:, |$)", details)}
        assert len(shares) == 4 and all(0.0 <= w <= 1.0 for w in shares.values())
        assert shares[most] == float(weight) == max(shares.values())  # names the largest


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
