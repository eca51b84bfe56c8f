"""Fetch and prepare Tiny Shakespeare: `python -m data`.

    python -m data                          # the cache, else a download (checked)
    python -m data --data_path input.txt    # a copy you have: checked, then put in the cache

Training does the same on its first run; this is for a machine that will train offline, or to
check a copy. The corpus ends up in data/shakespeare_char/input.txt, prepared beside it."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass

from data.corpus import SHAKESPEARE_CACHE, find_shakespeare, load_dataset
from infra.cli import option, parse_into
from infra.errors import run_main
from infra.files import write_atomic


@dataclass(frozen=True)
class FetchOptions:
    data_path: str | None = option(None, "a copy of Tiny Shakespeare to check and put in the cache")


def main(argv: list[str] | None = None) -> None:
    options = parse_into(FetchOptions, argv, __doc__.split("\n")[0])
    if options.data_path:
        source = find_shakespeare(options.data_path)  # a file, and exactly Tiny Shakespeare
        if source.resolve() != SHAKESPEARE_CACHE.resolve():
            # whole or not at all: a full disk leaves no partial cache for later runs to trip on
            write_atomic(SHAKESPEARE_CACHE, lambda tmp: shutil.copyfile(source, tmp))
            print(f"copied {source} to {SHAKESPEARE_CACHE}")
    data = load_dataset("shakespeare_char", say=print)
    print(
        f"Tiny Shakespeare ready in {data.data_dir}: {data.tokenizer.vocab_size} characters, "
        f"{data.train.numel():,} training and {data.val.numel():,} validation tokens"
    )


if __name__ == "__main__":
    sys.exit(run_main(main, prog="python -m data"))
