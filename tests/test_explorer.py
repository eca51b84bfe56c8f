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
from helpers import tiny_gpt_config

import sample
from checkpoint import load_model
from model import GPT
from model.attention_maps import attention_maps
from viz import explore

pytestmark = pytest.mark.e2e


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


PROMPT = "ROMEO:\nO, she doth teach"


@pytest.fixture(scope="module")
def page_file(tiny_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("explorer") / "attention.html"
    argv = ["--ckpt", str(tiny_run), "--prompt", PROMPT, "--max_new_tokens", "60"]
    assert sample.main([*argv, "--seed", "3", "--attention", str(path), "--stream", "false"]) == 0
    return path


@pytest.fixture(scope="module")
def long_page_file(tiny_run, tmp_path_factory):
    """The README's length, 200 characters: several context windows of tiny.yaml's 32, saved
    through explore() as from a notebook."""
    model, tokenizer = load_model(tiny_run)
    explorer = explore(model, tokenizer, PROMPT, max_new_tokens=200 - len(PROMPT), seed=3)
    return explorer.save(tmp_path_factory.mktemp("long") / "long.html")


@pytest.fixture(scope="module")
def rope_page_file(tiny_run, tmp_path_factory):
    """An untrained model with rotary positions and four heads (tests/helpers.py's tiny one)."""
    _, tokenizer = load_model(tiny_run)
    torch.manual_seed(0)
    config = tiny_gpt_config(pos_embedding="rope", vocab_size=len(tokenizer.chars))
    explorer = explore(GPT(config), tokenizer, PROMPT, max_new_tokens=20, seed=3)
    return explorer.save(tmp_path_factory.mktemp("rope") / "rope.html")


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


def open_page(browser, path, width: int = 1400, height: int = 1000):
    """The page in a new tab, its console errors collected in page.errors."""
    page = browser.new_page(viewport={"width": width, "height": height})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_selector("[data-role=text] span.ch")
    page.errors = errors
    return page


@pytest.fixture
def page(browser, page_file):
    page = open_page(browser, page_file)
    yield page
    page.close()


@pytest.fixture
def long_page(browser, long_page_file):
    page = open_page(browser, long_page_file)
    yield page
    page.close()


def span_weights(page) -> list[float]:
    return page.eval_on_selector_all(
        "[data-role=text] span.ch", "spans => spans.map(s => s.dataset.weight)"
    )


def char(t: int) -> str:
    return f'[data-role=text] span.ch[data-pos="{t}"]'


def chosen(page) -> tuple[int, int]:
    """The query and the key the views show: the text's outlined and underlined characters,
    which the formula and the neuron view must agree with."""
    t = page.eval_on_selector("[data-role=text] span.ch.query", "s => +s.dataset.pos")
    s = page.eval_on_selector("[data-role=text] span.ch.key", "s => +s.dataset.pos")
    assert f"query t = {t}" in page.inner_text("[data-role=formula-head]")
    assert f"Key s = {s}" in page.inner_text("[data-role=neuron-key]")
    return t, s


def zoom_cell(page, t: int, s: int) -> tuple[float, float]:
    """Where on the screen the zoom draws query t's weight for key s."""
    zoom = page.locator("[data-role=zoom]")
    start, size = int(zoom.get_attribute("data-start")), int(zoom.get_attribute("data-size"))
    assert start <= t < start + size and start <= s < start + size, "not in the zoom's stretch"
    zoom.scroll_into_view_if_needed()
    box = zoom.bounding_box()
    return (
        box["x"] + (s - start + 0.5) * box["width"] / size,
        box["y"] + (t - start + 0.5) * box["height"] / size,
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
    assert f"Key s = {s}" in page.inner_text("[data-role=neuron-key]")
    listed = page.eval_on_selector_all(
        "[data-role=neuron] tr[data-channel]",
        "rows => rows.map(r => [+r.dataset.channel, +r.dataset.q, +r.dataset.k])",
    )
    sizes = [abs(q * k) for _, q, k in listed]
    assert sizes == sorted(sizes, reverse=True)  # the channels that make the score first
    rows = [(q, k) for _, q, k in sorted(listed)]  # in channel order
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
    total = float(page.get_attribute("[data-role=neuron-key] [data-sum]", "data-sum"))
    score = float(page.get_attribute("[data-role=neuron-key] [data-score]", "data-score"))
    formula_score = float(page.inner_text(f'[data-role=formula] tr[data-s="{s}"] td:nth-child(3)'))
    assert score == pytest.approx(formula_score, abs=1e-4)
    assert total == pytest.approx(score, rel=1e-2, abs=1e-2)  # float16 vectors, float32 score
    assert score == pytest.approx(float(q[0, 0, t - start] @ k[0, 0, s - start]), rel=1e-5)


@needs_browser
def test_the_neuron_views_swatches_are_every_keys_score_and_a_click_picks_that_key(page, page_file):
    data = page_data(page_file)
    t = len(PROMPT) + 12
    page.click(char(t))
    swatches = page.eval_on_selector_all(
        "[data-role=neuron-keys] [data-s]", "ss => ss.map(s => [+s.dataset.s, +s.dataset.score])"
    )
    assert [s for s, _ in swatches] == list(range(data["start"][t], t + 1))  # every key, once
    formula = page.eval_on_selector_all(
        "[data-role=formula] tr[data-s]",
        "rows => rows.map(r => [+r.dataset.s, +r.children[2].textContent])",
    )
    by_key = dict(formula)
    assert all(score == pytest.approx(by_key[s], abs=1e-4) for s, score in swatches)
    s = data["start"][t] + 1
    page.click(f'[data-role=neuron-keys] [data-s="{s}"]')
    assert chosen(page) == (t, s)


@needs_browser
def test_the_zoom_chooses_query_and_key_by_click_and_by_keyboard(page, page_file):
    data = page_data(page_file)
    T = len(data["ids"])
    page.click("[data-role=grid] canvas[data-layer='1'][data-head='1']")
    assert page.inner_text("[data-role=zoom-title]").startswith("Zoom: layer 1, head 1")
    page.click(char(T - 5))  # the zoom follows the query to the end of the text
    t, s = T - 4, T - 8  # a cell in the past of its row
    page.mouse.click(*zoom_cell(page, t, s))
    assert chosen(page) == (t, s)
    page.focus("[data-role=zoom]")
    page.keyboard.press("ArrowLeft")
    assert chosen(page) == (t, s - 1)
    page.keyboard.press("ArrowUp")
    assert chosen(page) == (t - 1, s - 1)  # the key, pinned, stays


@needs_browser
def test_a_clicked_query_stays_while_the_pointer_crosses_the_text_until_esc(page):
    t = len(PROMPT) + 10
    page.hover(char(t - 4))
    assert chosen(page)[0] == t - 4  # nothing pinned: pointing previews
    page.click(char(t))
    for other in (t - 5, t + 3, 2, t + 20):
        page.hover(char(other))
        assert chosen(page)[0] == t, f"pointing at {other} took the pinned query"
    # to the views on the right, across the text, as a reader would go
    start, end = page.locator(char(t)).bounding_box(), page.locator("[data-role=formula-head]")
    end = end.bounding_box()
    page.mouse.move(start["x"] + 2, start["y"] + 2)
    page.mouse.move(end["x"] + 10, end["y"] + 10, steps=40)
    assert chosen(page)[0] == t
    assert "query" in page.get_attribute(".explorer", "data-pinned")
    page.keyboard.press("Escape")
    assert page.get_attribute(".explorer", "data-pinned") == ""
    page.hover(char(t + 3))
    assert chosen(page)[0] == t + 3  # free again: pointing previews
    page.click(char(t + 3))
    page.click(char(t + 3))  # a second click on the pinned character frees it too
    page.hover(char(t + 6))
    assert chosen(page)[0] == t + 6


@needs_browser
def test_a_clicked_key_stays_while_the_pointer_crosses_other_keys_until_esc(page, page_file):
    data = page_data(page_file)
    t = len(PROMPT) + 20
    page.click(char(t))
    first = data["start"][t]
    page.hover(f'[data-role=formula] tr[data-s="{first + 1}"]')
    assert chosen(page) == (t, first + 1)  # the key not pinned: pointing previews
    page.click(f'[data-role=formula] tr[data-s="{first + 2}"]')
    for s in (first, first + 3, t):
        page.hover(f'[data-role=formula] tr[data-s="{s}"]')
        assert chosen(page) == (t, first + 2)
    page.hover(f'[data-role=headview] text[data-side=key][data-pos="{first + 4}"]')
    assert chosen(page) == (t, first + 2)
    page.keyboard.press("Escape")
    page.hover(f'[data-role=formula] tr[data-s="{first + 3}"]')
    assert chosen(page) == (t, first + 3)


@needs_browser
def test_the_zoom_labels_both_axes_follows_the_query_and_reads_out_the_models_weight(
    long_page, long_page_file, tiny_run
):
    """At 200 characters the zoom shows 40 to 64 of them, each on both axes beside its row or
    column, around the query wherever it is; the cell under the pointer is read out with the
    weight of the model's own attention map."""
    data = page_data(long_page_file)
    T, chars = len(data["ids"]), [data["chars"][i] for i in data["ids"]]
    assert T == 200
    glyph = {"\n": "↵", " ": "␣"}
    zoom = long_page.locator("[data-role=zoom]")
    for t in (150, 30, 197):  # far apart: the zoom must move each time
        long_page.click(char(t))
        still = """async () => { const label = document.querySelector('[data-role=zoom-keys] span');
                                  await new Promise(done => setTimeout(done, 300));
                                  return label.isConnected; }"""
        assert long_page.evaluate(still)  # drawn once, not redrawn in a loop
        start, size = int(zoom.get_attribute("data-start")), int(zoom.get_attribute("data-size"))
        assert 40 <= size <= 64 and start <= t < start + size
        box = zoom.bounding_box()
        for role, axis in (("zoom-keys", "x"), ("zoom-queries", "y")):
            labels = long_page.eval_on_selector_all(
                f"[data-role={role}] span",
                """ss => ss.map(s => { const b = s.getBoundingClientRect();
                     return [+s.dataset.pos, s.textContent, b.x + b.width / 2,
                             b.y + b.height / 2, parseFloat(getComputedStyle(s).fontSize)]; })""",
            )
            positions = list(range(start, start + size))
            assert [p for p, *_ in labels] == positions
            assert [c for _, c, *_ in labels] == [glyph.get(chars[p], chars[p]) for p in positions]
            cell = box["width"] / size
            for i, (_, _, x, y, font) in enumerate(labels):  # each beside its own row or column
                centre = x if axis == "x" else y
                assert box[axis] + i * cell <= centre <= box[axis] + (i + 1) * cell
                assert font >= 10
                assert (y < box["y"]) if axis == "x" else (x < box["x"])
        red = long_page.eval_on_selector("[data-role=zoom-queries] .q", "s => +s.dataset.pos")
        assert red == t  # the query's row
    model, _ = load_model(tiny_run)
    long_page.click("[data-role=grid] canvas[data-layer='1'][data-head='1']")
    t = 150
    long_page.click(char(t))
    first = data["start"][t]
    maps = attention_maps(model, torch.tensor([data["ids"][first : t + 1]]))
    for s in (t, t - 3, first):
        long_page.mouse.move(*zoom_cell(long_page, t, s))
        readout = long_page.locator("[data-role=readout]")
        assert [readout.get_attribute(f"data-{x}") for x in "ts"] == [str(t), str(s)]
        assert f"query t = {t}" in readout.inner_text() and f"key s = {s}" in readout.inner_text()
        weight = float(long_page.get_attribute("[data-role=readout] [data-weight]", "data-weight"))
        assert weight == pytest.approx(float(maps[1][0, 1, -1, s - first]), abs=2e-6)
        assert f"{weight:.6f}" in readout.inner_text()
    long_page.mouse.move(*zoom_cell(long_page, t - 2, t))
    assert "masked" in long_page.inner_text("[data-role=readout]")


def test_an_explorer_prints_as_one_short_line(tiny_run):
    """Not its data: a notebook keeps every output's text/plain beside the page."""
    model, tokenizer = load_model(tiny_run)
    explorer = explore(model, tokenizer, "ROMEO:", max_new_tokens=40)
    printed = repr(explorer)
    assert printed == "<Explorer: 46 characters, 2 layers x 2 heads>"
    assert len(printed) < 100 and str(explorer) == printed


@needs_browser
def test_the_neuron_view_says_q_and_k_are_rotated_when_the_model_uses_rope(
    browser, rope_page_file, page_file
):
    assert page_data(rope_page_file)["rotary"] is True and page_data(page_file)["rotary"] is False
    for path, rotary in ((rope_page_file, True), (page_file, False)):
        page = open_page(browser, path)
        assert ("after their rotation" in page.inner_text("[data-role=neuron-head]")) == rotary
        assert page.errors == []
        page.close()


@needs_browser
def test_with_all_of_four_heads_each_character_shows_at_most_three_stripes(browser, rope_page_file):
    """Each stripe at least a third of the character's height: the heads that weigh it most."""
    page = open_page(browser, rope_page_file)
    page.select_option("[data-role=head]", "all")
    page.click(char(len(PROMPT) + 15))
    spans = page.eval_on_selector_all(
        "[data-role=text] span.ch",
        "ss => ss.map(s => [s.dataset.weight, s.dataset.heads || '', s.style.background])",
    )
    striped = 0
    for weights, heads, background in spans:
        if weights == "0":
            continue
        ws = [float(w) for w in weights.split(",")]
        assert len(ws) == 4
        shown = [int(h) for h in heads.split(",") if h]
        # each stripe is two stops of one colour: where it starts and where it ends
        stops = re.findall(r"(rgba?\([^)]*\)) ([\d.]+)%", background)
        stripes = list(zip(stops[::2], stops[1::2], strict=True))
        assert len(shown) <= 3 and len(stripes) == len(shown)
        for (colour, start), (same, end) in stripes:
            assert colour == same and float(end) - float(start) >= 100 / 3 - 0.1
        heaviest = sorted(range(4), key=lambda h: -ws[h])[: len(shown)]
        assert sorted(heaviest) == shown
        striped += len(shown) == 3
    assert striped > 0  # the untrained heads spread their weight: all four could show
    page.close()


@needs_browser
def test_the_query_and_key_are_marked_in_colours_no_head_uses(browser, rope_page_file):
    page = open_page(browser, rope_page_file)
    heads = set(page.eval_on_selector_all(
        "[data-role=heads-shown] label", "ls => ls.map(l => getComputedStyle(l).color)"
    ))  # fmt: skip
    assert len(heads) == 4
    key = page.eval_on_selector(
        "[data-role=text] span.ch.key", "s => getComputedStyle(s).boxShadow"
    )
    query = page.eval_on_selector(
        "[data-role=text] span.ch.query", "s => getComputedStyle(s).outlineColor"
    )
    marks = set(re.findall(r"rgb\(\d+, \d+, \d+\)", key)) - {"rgb(255, 255, 255)"}
    assert marks and not marks & heads and query not in heads
    page.close()


@needs_browser
def test_the_page_fits_a_900_pixel_wide_screen(browser, page_file):
    page = browser.new_page(viewport={"width": 900, "height": 800})
    page.goto(page_file.as_uri())
    page.wait_for_selector("[data-role=text] span.ch")
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 900
    for role in ("text", "formula-head", "grid", "zoombox", "headview", "neuron-keys"):
        box = page.locator(f"[data-role={role}]").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 900, role
    page.close()
