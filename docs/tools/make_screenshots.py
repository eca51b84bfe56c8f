"""The pictures in docs/: the README's attention picture, the attention explorer's views and
TensorBoard's tabs, from a trained small.yaml run, the last two in headless Chromium (Playwright,
Debian's chromium binary). Run from the repository's root:

    python docs/tools/make_screenshots.py --ckpt out/small

TensorBoard is served on the run's parent directory (`tensorboard --logdir out`, as the README
says) and opened as a newcomer first sees it: default settings, a 1280x800 window.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infra.cli import option, parse_into
from infra.errors import UserError, run_main

DOCS = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ScreenshotOptions:
    ckpt: str = option(help="a small.yaml run directory or checkpoint")
    prompt: str = option("ROMEO:", "the prompt")
    new: int = option(200, "characters to generate after it")
    query: int = option(60, "the character pointed at")
    views: str = option("all", "which pictures", choices=("hero", "explorer", "tensorboard", "all"))
    hero_text: str = option("ROMEO:\nBut soft! what light", "the README picture's text")
    hero_layer: int = option(1, "the README picture's layer")
    out: str = option("docs", "where the pictures go")


@contextlib.contextmanager
def serve_tensorboard(logdir: Path | str) -> Iterator[str]:
    """TensorBoard on logdir, on a free port, until the block ends; yields its address."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
    server = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection(("localhost", port)):
                break
            if server.poll() is not None:
                raise UserError(f"tensorboard exited with status {server.returncode}")
            time.sleep(0.1)
        yield f"http://localhost:{port}"
    finally:
        server.terminate()
        server.wait()


def tensorboard_screenshots(browser, run_dir: Path, out: Path) -> list[Path]:
    """The landing page (TIME SERIES), CUSTOM SCALARS, SCALARS with the loss chart's description
    opened, and the PROJECTOR, each as TensorBoard first shows it."""
    shots = []
    with serve_tensorboard(run_dir.parent) as address:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        # forceSVG: charts drawn as SVG, which headless Chromium's screenshots capture
        page.goto(f"{address}/?forceSVG=true")
        page.wait_for_selector("card-view", timeout=60_000)
        time.sleep(3)  # the charts draw after their cards appear
        shots.append(out / "tensorboard_time_series.png")
        page.screenshot(path=shots[-1])
        page.goto(f"{address}/?forceSVG=true#custom_scalars")
        time.sleep(5)
        shots.append(out / "tensorboard_custom_scalars.png")
        page.screenshot(path=shots[-1])
        page.goto(f"{address}/?forceSVG=true#scalars")
        time.sleep(5)
        button = page.locator('[title="Show summary description"]').first
        if button.count():
            button.click()
            time.sleep(1)
        shots.append(out / "tensorboard_scalars.png")
        page.screenshot(path=shots[-1])
        page.goto(f"{address}/?forceSVG=true#projector")
        time.sleep(20)  # the projector loads the vectors, then computes a PCA
        shots.append(out / "tensorboard_projector.png")
        page.screenshot(path=shots[-1])
        page.close()
    return shots


def explorer_screenshots(browser, options: ScreenshotOptions, out: Path) -> list[Path]:
    """The explorer's views, at layer 1, head 0, with the character at --query pinned as the
    query (its key: the one it attends to most): the text, the formula, the head view (every
    head), the neuron view, the grid of every layer and head, and the zoom, read out at that
    key. Each picture is one view, cut from a 900-pixel-wide page (two columns of views) at
    twice the pixels, so that it reads when shown about 450 pixels wide."""
    views = {  # the picture's name: the parts of the page it shows
        "text": "section:has([data-role=text]) > *",
        "formula": "section:has([data-role=formula]) > *",
        "heads": "section:has([data-role=headview]) > *",
        "neuron": "section:has([data-role=neuron]) > *",
        "grid": "[data-role=grid]",
        "zoom": "[data-role=zoomcol]",
    }
    shots = [out / f"explorer_{name}.png" for name in views]
    with tempfile.TemporaryDirectory() as tmp:
        page_file = Path(tmp) / "attention.html"
        subprocess.run(
            [sys.executable, "sample.py", "--ckpt", options.ckpt, "--prompt", options.prompt,
             "--max_new_tokens", str(options.new), "--attention", str(page_file), "--seed", "1337",
             "--stream", "false"],
            check=True, cwd=DOCS.parent,
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 900, "height": 1100}, device_scale_factor=2)
        page.goto(page_file.as_uri())
        page.click('[data-role=grid] canvas[data-layer="1"][data-head="0"]')
        page.click(f'[data-role=text] span.ch[data-pos="{options.query}"]')  # pinned
        # its key pinned as well, by a click on its cell in the zoom: nothing the pointer
        # crosses while the views scroll into sight changes them
        zoom = page.locator("[data-role=zoom]")
        zoom.scroll_into_view_if_needed()
        start, size = int(zoom.get_attribute("data-start")), int(zoom.get_attribute("data-size"))
        key = int(page.get_attribute("[data-role=text] span.ch.key", "data-pos"))
        box = zoom.bounding_box()
        cell = box["width"] / size
        page.mouse.click(
            box["x"] + (key - start + 0.5) * cell, box["y"] + (options.query - start + 0.5) * cell
        )
        page.mouse.move(0, 0)  # the page's margin
        for shot, selector in zip(shots, views.values(), strict=True):
            # the box around the parts, on the whole page: a view's section may be stretched
            # to the height of its neighbour, which would add white below it
            clip = page.evaluate(
                """selector => {
                  const boxes = [...document.querySelectorAll(selector)]
                    .map(e => e.getBoundingClientRect()).filter(b => b.height > 0);
                  const left = Math.min(...boxes.map(b => b.left)) + scrollX;
                  const top = Math.min(...boxes.map(b => b.top)) + scrollY;
                  return {x: left, y: top,
                          width: Math.max(...boxes.map(b => b.right)) + scrollX - left,
                          height: Math.max(...boxes.map(b => b.bottom)) + scrollY - top};
                }""",
                selector,
            )
            page.screenshot(path=shot, full_page=True, clip=clip)
        page.close()
    return shots


def hero_picture(options: ScreenshotOptions, out: Path) -> Path:
    """One layer's heads over a short line, drawn as sample.py --attention draws them, with
    labels large enough to read when the picture is shown at the README's width."""
    import torch

    from checkpoint import load_model
    from model.attention_maps import attention_maps
    from viz.figures import attention_figure

    model, tokenizer = load_model(options.ckpt)
    text, layer = options.hero_text, options.hero_layer
    maps = attention_maps(model, torch.tensor([tokenizer.encode(text)]))
    title = f"What each character attends to, in layer {layer} of a small.yaml model"
    figure = attention_figure([maps[layer][0]], list(text), title, first_layer=layer)
    for axes in figure.axes[:-1]:  # the heads' panels; the last is the colour bar
        axes.tick_params(labelsize=9)
    path = out / "attention_hero.png"
    figure.savefig(path, dpi=110)
    return path


def main(argv: list[str] | None = None) -> None:
    options = parse_into(ScreenshotOptions, argv, __doc__.split("\n")[0])
    chromium = shutil.which("chromium")
    if chromium is None:
        raise UserError("no chromium on PATH: apt-get install chromium")
    run_dir = Path(options.ckpt)
    run_dir = run_dir if run_dir.is_dir() else run_dir.parent
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    shots = [hero_picture(options, out)] if options.views in ("hero", "all") else []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        if options.views in ("explorer", "all"):
            shots += explorer_screenshots(browser, options, out)
        if options.views in ("tensorboard", "all"):
            shots += tensorboard_screenshots(browser, run_dir.resolve(), out)
        browser.close()
    for shot in shots:
        print(f"wrote {shot}")


if __name__ == "__main__":
    sys.exit(run_main(main, prog="make_screenshots.py"))
