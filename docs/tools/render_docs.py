"""The tables of README.md and docs/performance.md, rendered from the records under records/.

    python docs/tools/render_docs.py          # rewrite the tables in place
    python docs/tools/render_docs.py --check  # exit 1 if a table differs from the records

A table sits between `<!-- records:NAME -->` and `<!-- /records -->` in a document; everything
between the two markers is generated. For each table the newest record of each kind and machine
is used, so a new measurement replaces the old figure, and a test (tests/test_docs.py) fails when
a document and the records disagree.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from other_tables import (
    render_attention_kernel,
    render_explorer,
    render_extras_cost,
    render_sampling,
    render_sweep_speed,
)
from training_tables import (
    render_ablation,
    render_configs,
    render_evaluation_cost,
    render_first_run,
    render_gpu,
    render_small,
    render_small_trade,
    render_versus,
)

from infra.cli import option, parse_into
from infra.errors import UserError, run_main
from records import ROOT, Record, read_records

DOCUMENTS = (ROOT / "README.md", ROOT / "docs" / "performance.md", ROOT / "docs" / "sweeps.md")
MARKER = re.compile(r"(<!-- records:([\w-]+) -->\n)(.*?)(<!-- /records -->)", re.DOTALL)

RENDERERS: dict[str, Callable[[list[Record], str], str]] = {
    "evaluation-cost": render_evaluation_cost,
    "gpu": render_gpu,
    "explorer": render_explorer,
    "configs": render_configs,
    "first-run": render_first_run,
    "versus-nanogpt": render_versus,
    "small": render_small,
    "small-trade": render_small_trade,
    "ablation": render_ablation,
    "sampling": render_sampling,
    "attention-kernel": render_attention_kernel,
    "extras-cost": render_extras_cost,
    "sweep-speed": render_sweep_speed,
}


# ---- the documents ---------------------------------------------------------------------------


def render(text: str, records: list[Record], prefix: str) -> str:
    """text with every marked table rendered anew."""

    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name not in RENDERERS:
            raise UserError(f"unknown table <!-- records:{name} -->; known: {', '.join(RENDERERS)}")
        return match.group(1) + RENDERERS[name](records, prefix) + match.group(4)

    return MARKER.sub(replace, text)


def stale_documents(documents: Iterable[Path] = DOCUMENTS) -> list[Path]:
    """The documents whose tables differ from what the records give."""
    records = read_records()
    stale = []
    for path in documents:
        prefix = "../" if path.parent.name == "docs" else ""
        text = path.read_text(encoding="utf-8")
        if render(text, records, prefix) != text:
            stale.append(path)
    return stale


@dataclass(frozen=True)
class RenderOptions:
    check: bool = option(False, "only check: exit 1 if a table differs from the records")


def main(argv: list[str] | None = None) -> int:
    options = parse_into(RenderOptions, argv, __doc__.split("\n")[0])
    records = read_records()
    if options.check:
        stale = stale_documents()
        for path in stale:
            print(
                f"{path.relative_to(ROOT)}: a table differs from records/; run "
                "python docs/tools/render_docs.py",
                file=sys.stderr,
            )
        return 1 if stale else 0
    for path in DOCUMENTS:
        prefix = "../" if path.parent.name == "docs" else ""
        text = path.read_text(encoding="utf-8")
        new = render(text, records, prefix)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"rendered {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="render_docs.py"))
