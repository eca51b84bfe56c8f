"""The pictures in docs/: the attention explorer's three views, from a trained small.yaml model,
in headless Chromium (Playwright, Debian's chromium binary). Run from the repository's root:

    python docs/make_screenshots.py --ckpt out/small
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.cli import option, parse_into
from infra.errors import UserError, run_main

DOCS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ScreenshotOptions:
    ckpt: str = option(help="a small.yaml run directory or checkpoint")
    prompt: str = option("ROMEO:", "the prompt")
    new: int = option(200, "characters to generate after it")
    query: int = option(60, "the character pointed at")


def main(argv: list[str] | None = None) -> None:
    options = parse_into(ScreenshotOptions, argv, __doc__.split("\n")[0])
    chromium = shutil.which("chromium")
    if chromium is None:
        raise UserError("no chromium on PATH: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        page_file = Path(tmp) / "attention.html"
        subprocess.run(
            [sys.executable, "sample.py", "--ckpt", options.ckpt, "--prompt", options.prompt,
             "--max_new_tokens", str(options.new), "--attention", str(page_file), "--seed", "1337",
             "--stream", "false"],
            check=True, cwd=DOCS.parent,
        )  # fmt: skip
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(page_file.as_uri())
            page.select_option("#layer", "1")
            page.hover(f'#text span.ch[data-pos="{options.query}"]')
            page.locator("#text").screenshot(path=str(DOCS / "explorer_text.png"))
            page.select_option("#head", "all")
            page.hover(f'#text span.ch[data-pos="{options.query}"]')
            page.locator("#text").screenshot(path=str(DOCS / "explorer_text_all_heads.png"))
            page.locator("#grid").screenshot(path=str(DOCS / "explorer_grid.png"))
            page.select_option("#head", "0")
            page.hover(f'#text span.ch[data-pos="{options.query}"]')
            page.locator("#formula-head").scroll_into_view_if_needed()
            page.locator("section:nth-of-type(2)").screenshot(
                path=str(DOCS / "explorer_formula.png")
            )
            browser.close()
    for name in ("explorer_text", "explorer_text_all_heads", "explorer_grid", "explorer_formula"):
        print(f"wrote docs/{name}.png")


if __name__ == "__main__":
    sys.exit(run_main(main, prog="make_screenshots.py"))
