"""The attention explorer (sample.py --attention FILE.html): the numbers in the page are the
model's, and, in a real browser (headless Chromium through Playwright), the page shows them."""

from __future__ import annotations

import base64
import json
import math
import re
import shutil

import numpy as np
import pytest
import torch

import sample
from checkpoint import load_model
from model.attention_maps import attention_maps
from model.gpt import causal_softmax

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROMPT = "ROMEO:\nO, she doth teach"


@pytest.fixture(scope="module")
def page_file(tiny_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("explorer") / "attention.html"
    argv = ["--ckpt", str(tiny_run), "--prompt", PROMPT, "--max_new_tokens", "60"]
    assert sample.main([*argv, "--seed", "3", "--attention", str(path), "--stream", "false"]) == 0
    return path


def page_data(path) -> dict:
    text = path.read_text(encoding="utf-8")
    found = re.search(
        r'<script type="application/json" data-role="data">(.*?)</script>', text, re.S
    )
    return json.loads(found.group(1).replace("<\\/", "</"))


def test_the_page_is_self_contained(page_file):
    text = page_file.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?https?:""", text)  # no network
    assert "<script src" not in text and "<link" not in text


def test_the_numbers_in_the_page_are_the_models(page_file, tiny_run):
    """Parsed back out of the page: the scores give, through the formula softmax(QKᵀ/√d_k) with
    the causal mask, the weights of the model's own attention maps over the same window."""
    model, tokenizer = load_model(tiny_run)
    data = page_data(page_file)
    ids, starts, T = data["ids"], data["start"], len(data["ids"])
    assert tokenizer.decode(ids).startswith(PROMPT) and len(PROMPT) + 60 == T
    scores = np.frombuffer(base64.b64decode(data["scores"]), dtype="<f4")
    lengths = [t - starts[t] + 1 for t in range(T)]
    assert scores.size == data["n_layer"] * data["n_head"] * sum(lengths)
    per_head, hs = sum(lengths), data["head_size"]
    checked = 0
    for t in (0, 5, len(PROMPT) - 1, T - 1):  # the window of query t, through the model itself
        window = torch.tensor([ids[starts[t] : t + 1]])
        maps = attention_maps(model, window)
        for layer in range(data["n_layer"]):
            for head in range(data["n_head"]):
                offset = (layer * data["n_head"] + head) * per_head + sum(lengths[:t])
                row = torch.tensor(scores[offset : offset + lengths[t]], dtype=torch.float64)
                weights = torch.softmax(row / math.sqrt(hs), dim=-1)
                expected = maps[layer][0, head, -1, : lengths[t]].double()
                torch.testing.assert_close(weights, expected, atol=1e-5, rtol=1e-4)
                checked += 1
    assert checked == 4 * data["n_layer"] * data["n_head"]


def test_the_page_formula_is_the_formula(tiny_run):
    """The scores the page receives are q·kᵀ of CausalSelfAttention.project: softmax of them
    over √d_k, masked, is causal_softmax."""
    model, _ = load_model(tiny_run)
    attn = model.transformer.h[0].attn
    x = torch.randn(1, 9, model.config.n_embd)
    q, k, _ = attn.project(x)
    scores = q @ k.transpose(-2, -1)
    mask = torch.ones(9, 9, dtype=torch.bool).tril()
    by_hand = torch.softmax(scores.masked_fill(~mask, float("-inf")) / math.sqrt(q.size(-1)), -1)
    torch.testing.assert_close(by_hand, causal_softmax(q, k))


@pytest.mark.parametrize("suffix", [".txt", ".svg", ""])
def test_any_other_suffix_is_one_line(tiny_run, tmp_path, capsys, suffix):
    code = sample.main(["--ckpt", str(tiny_run), "--attention", str(tmp_path / f"a{suffix}")])
    err = capsys.readouterr().err
    assert code == 2 and "suffix chooses" in err and err.count("\n") == 1


# ---- in a real browser -----------------------------------------------------------------------

needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed")


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if CHROMIUM is None:
        pytest.skip("no Chromium installed")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, page_file):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_file.as_uri())
    page.wait_for_selector("[data-role=text] span.ch")
    page.errors = errors
    yield page
    page.close()


def span_weights(page) -> list[float]:
    return page.eval_on_selector_all(
        "[data-role=text] span.ch", "spans => spans.map(s => s.dataset.weight)"
    )


@needs_browser
def test_the_page_loads_with_no_console_error(page):
    assert page.errors == []
    assert page.locator("[data-role=grid] canvas").count() > 0


@needs_browser
def test_pointing_at_a_character_shades_exactly_the_past_with_its_row(page, page_file, tiny_run):
    data = page_data(page_file)
    model, _ = load_model(tiny_run)
    t = len(PROMPT) + 10
    page.hover(f'[data-role=text] span.ch[data-pos="{t}"]')
    weights = [float(w) for w in span_weights(page)]
    start = data["start"][t]
    assert all(w == 0 for w in weights[t + 1 :])  # the future: nothing
    assert all(w == 0 for w in weights[:start])  # outside the window: nothing
    window = torch.tensor([data["ids"][start : t + 1]])
    expected = attention_maps(model, window)[0][0, 0, -1]  # layer 0, head 0, row t
    torch.testing.assert_close(
        torch.tensor(weights[start : t + 1], dtype=torch.float64), expected.double(), atol=2e-6,
        rtol=0,
    )  # fmt: skip
    assert abs(sum(weights) - 1) < 1e-4


@needs_browser
def test_choosing_a_grid_cell_switches_the_text_views_layer_and_head(page, page_file):
    data = page_data(page_file)
    layer, head = data["n_layer"] - 1, data["n_head"] - 1
    page.click(f'[data-role=grid] canvas[data-layer="{layer}"][data-head="{head}"]')
    assert page.input_value("[data-role=layer]") == str(layer) and page.input_value(
        "[data-role=head]"
    ) == str(head)
    assert f"Layer {layer}, head {head}" in page.inner_text("[data-role=formula-head]")


@needs_browser
def test_the_formula_views_weights_sum_to_one_and_equal_the_text_views(page):
    page.focus("[data-role=text]")  # move the query with the arrow keys
    page.keyboard.press("ArrowLeft")
    rows = page.eval_on_selector_all(
        "[data-role=formula] tr[data-s]", "rows => rows.map(r => [+r.dataset.s, +r.dataset.weight])"
    )
    total = float(page.get_attribute("[data-role=formula] [data-sum]", "data-sum"))
    assert abs(sum(w for _, w in rows) - 1) < 1e-6 and abs(total - 1) < 1e-6
    text = [float(w) for w in span_weights(page)]
    assert all(abs(text[s] - w) < 1e-6 for s, w in rows)  # the same row in both views
    weights = [w for _, w in rows]
    assert weights == sorted(weights, reverse=True)  # largest first, by default
    page.select_option("[data-role=order]", "position")
    in_order = page.eval_on_selector_all(
        "[data-role=formula] tr[data-s]", "rows => rows.map(r => [+r.dataset.s, +r.dataset.weight])"
    )
    assert in_order == sorted(rows)  # the same rows, in the order of the text
