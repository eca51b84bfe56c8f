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

pytestmark = pytest.mark.e2e


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


@needs_browser
@pytest.mark.parametrize("shading", ["linear", "sqrt"])
def test_the_shading_is_what_the_legend_says_in_the_text_the_grid_and_the_lines(
    page, page_file, shading
):
    """linear (the default, as TensorBoard's pictures): a weight w is drawn at w of the full
    colour; sqrt: at √w. Read back from the text's background, the grid's pixels and the head
    view's lines."""
    shade = (lambda w: w) if shading == "linear" else math.sqrt
    page.select_option("[data-role=shading]", shading)
    assert ("at w of the full" if shading == "linear" else "at √w") in page.inner_text(
        "[data-role=mapping]"
    )
    t = len(PROMPT) + 10
    page.hover(f'[data-role=text] span.ch[data-pos="{t}"]')
    spans = page.eval_on_selector_all(
        "[data-role=text] span.ch",
        "spans => spans.map(s => [+s.dataset.pos, s.dataset.weight, s.style.background])",
    )
    checked = 0
    for _, weight, background in spans:
        if weight != "0":  # the browser keeps a colour's alpha in 8 bits
            alpha = float(re.search(r"rgba\([^)]*,\s*([\d.]+)\)", background).group(1))
            assert alpha == pytest.approx(shade(float(weight)), abs=1 / 255)
            checked += 1
    assert checked == t - page_data(page_file)["start"][t] + 1
    # the grid's picture of layer 0, head 0: row t, grey 255 (1 - shade(w))
    pixels = page.evaluate(
        """t => { const c = document.querySelector('[data-role=grid] canvas');
                  return Array.from(c.getContext('2d').getImageData(0, t, c.width, 1).data); }""",
        t,
    )
    for s, weight, _ in spans:
        if weight != "0":
            assert pixels[4 * s] == round(255 * (1 - shade(float(weight)))), s
    lines = page.eval_on_selector_all(
        "[data-role=headview] line[data-head='0']",
        "ls => ls.map(l => [+l.dataset.weight, +l.getAttribute('stroke-opacity')])",
    )
    assert lines and all(o == pytest.approx(shade(w), abs=1e-4) for w, o in lines)


@needs_browser
def test_the_head_view_draws_a_line_per_key_and_shown_head_with_the_rows_weights(page, page_file):
    data = page_data(page_file)
    t = len(PROMPT) + 20
    page.hover(f'[data-role=text] span.ch[data-pos="{t}"]')
    n = t - data["start"][t] + 1
    lines = page.eval_on_selector_all(
        "[data-role=headview] line",
        "ls => ls.map(l => [+l.dataset.head, +l.dataset.s, +l.dataset.weight])",
    )
    assert len(lines) == n * data["n_head"]  # every head is shown at first
    formula = dict(page.eval_on_selector_all(
        "[data-role=formula] tr[data-s]", "rows => rows.map(r => [+r.dataset.s, +r.dataset.weight])"
    ))  # fmt: skip
    head0 = {s: w for h, s, w in lines if h == 0}
    assert head0.keys() == formula.keys()
    assert all(abs(head0[s] - w) < 1e-6 for s, w in formula.items())
    page.uncheck("[data-role=heads-shown] input[data-head='0']")
    heads = page.eval_on_selector_all(
        "[data-role=headview] line", "ls => ls.map(l => l.dataset.head)"
    )
    assert len(heads) == n * (data["n_head"] - 1) and "0" not in heads


@needs_browser
def test_the_neuron_view_adds_the_models_own_q_and_k_into_the_formulas_score(
    page, page_file, tiny_run
):
    """q_t and k_s as CausalSelfAttention.project makes them (float16 in the page), their
    products summing to q_t·k_s, the score the formula view shows for that key."""
    data = page_data(page_file)
    model, _ = load_model(tiny_run)
    t = len(PROMPT) + 7
    page.hover(f'[data-role=text] span.ch[data-pos="{t}"]')
    s = data["start"][t] + 2
    page.click(f'[data-role=formula] tr[data-s="{s}"]')  # choose the key
    assert f"key s = {s}" in page.inner_text("[data-role=neuron-head]")
    rows = page.eval_on_selector_all(
        "[data-role=neuron] tr[data-channel]", "rows => rows.map(r => [+r.dataset.q, +r.dataset.k])"
    )
    start = data["start"][t]
    caught = []
    hook = model.transformer.h[0].attn.register_forward_pre_hook(
        lambda attn, args: caught.append(attn.project(args[0], args[1] if len(args) > 1 else None))
    )
    with torch.no_grad():
        model(torch.tensor([data["ids"][start : t + 1]]))
    hook.remove()
    q, k, _ = caught[0]  # layer 0, (1, nh, T, hs)
    torch.testing.assert_close(
        torch.tensor([r[0] for r in rows]), q[0, 0, t - start].float(), atol=2e-3, rtol=1e-3
    )
    torch.testing.assert_close(
        torch.tensor([r[1] for r in rows]), k[0, 0, s - start].float(), atol=2e-3, rtol=1e-3
    )
    total = float(page.get_attribute("[data-role=neuron-head] [data-sum]", "data-sum"))
    score = float(page.get_attribute("[data-role=neuron-head] [data-score]", "data-score"))
    formula_score = float(page.inner_text(f'[data-role=formula] tr[data-s="{s}"] td:nth-child(3)'))
    assert score == pytest.approx(formula_score, abs=1e-4)
    assert total == pytest.approx(score, rel=1e-2, abs=1e-2)  # float16 vectors, float32 score
    assert score == pytest.approx(float(q[0, 0, t - start] @ k[0, 0, s - start]), rel=1e-5)


@needs_browser
def test_the_zoomed_head_chooses_query_and_key_by_click_and_by_keyboard(page, page_file):
    data = page_data(page_file)
    T = len(data["ids"])
    page.click("[data-role=grid] canvas[data-layer='1'][data-head='1']")
    assert page.inner_text("[data-role=zoom-title]") == "Zoomed: layer 1, head 1"
    box = page.locator("[data-role=zoom]").bounding_box()
    t, s = T - 5, T - 8  # a cell in the past of its row
    page.mouse.click(
        box["x"] + (s + 0.5) * box["width"] / T, box["y"] + (t + 0.5) * box["height"] / T
    )
    head = page.inner_text("[data-role=neuron-head]")
    assert f"query t = {t}" in head and f"key s = {s}" in head
    page.focus("[data-role=zoom]")
    page.keyboard.press("ArrowLeft")
    assert f"key s = {s - 1}" in page.inner_text("[data-role=neuron-head]")
    page.keyboard.press("ArrowUp")
    assert f"query t = {t - 1}" in page.inner_text("[data-role=neuron-head]")


@needs_browser
def test_the_page_fits_a_900_pixel_wide_screen(browser, page_file):
    page = browser.new_page(viewport={"width": 900, "height": 800})
    page.goto(page_file.as_uri())
    page.wait_for_selector("[data-role=text] span.ch")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 900
    for role in ("text", "formula-head", "grid", "zoom", "headview"):
        box = page.locator(f"[data-role={role}]").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 900, role
    page.close()
