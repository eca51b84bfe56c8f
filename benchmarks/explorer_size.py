"""The attention explorer's page for a 500-character text: its size and the time to write it.

    python benchmarks/explorer_size.py --ckpt out/small

Generates --chars characters from a one-line prompt (seed 1337), then times, --repeats times, what
`sample.py --attention FILE.html` does after generating: the attention over the whole text
(one forward pass per context window) and the page written to disk. Prints the median and writes
a record.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from common import machine_line
from recording import write_record

from checkpoint import load_model
from infra.cli import option, parse_into
from infra.errors import ConfigError, run_main
from model import generate
from viz.explorer import attention_over_text, explorer_html


@dataclass(frozen=True)
class ExplorerSizeOptions:
    ckpt: str = option(help="a checkpoint file or run directory (small.yaml's)")
    chars: int = option(500, "characters in the page: the prompt and what follows it")
    prompt: str = option("ROMEO:", "the prompt")
    repeats: int = option(3, "timed writes")


def main(argv: list[str] | None = None) -> None:
    options = parse_into(ExplorerSizeOptions, argv, __doc__.split("\n")[0])
    if not Path(options.ckpt).exists():
        raise ConfigError(f"--ckpt {options.ckpt} does not exist")
    model, tokenizer = load_model(options.ckpt)
    prompt = tokenizer.encode(options.prompt)
    generator = torch.Generator().manual_seed(1337)
    out = generate(model, torch.tensor([prompt]), options.chars - len(prompt), generator=generator)
    ids = out[0].tolist()
    print(machine_line())
    seconds, size = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "attention.html"
        for _ in range(options.repeats):
            start = time.perf_counter()
            attention = attention_over_text(model, ids)
            path.write_text(explorer_html(attention, tokenizer.chars, len(prompt), "t"), "utf-8")
            seconds.append(time.perf_counter() - start)
            size = path.stat().st_size
    c = model.config
    print(
        f"{len(ids)} characters, {c.n_layer} layers x {c.n_head} heads, block {c.block_size}: "
        f"{size / 1e6:.2f} MB, written in {statistics.median(seconds):.2f} s (median of "
        f"{len(seconds)})"
    )
    shape = f"{c.n_layer} layers, {c.n_head} heads, {c.n_embd} channels, block {c.block_size}"
    figures = {"chars": len(ids), "bytes": size, "seconds": seconds, "model": shape}
    write_record("explorer_size", f"{len(ids)}chars", figures)


if __name__ == "__main__":
    sys.exit(run_main(main, prog="explorer_size.py"))
