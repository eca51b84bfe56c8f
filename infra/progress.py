"""Progress wherever a user waits: a tqdm bar on a terminal, and elsewhere (a log file, CI, a
notebook's captured output) a plain line of how far it is and the time left, in tqdm's format."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")
PLAIN_FORMAT = (
    "{percentage:3.0f}% ({n_fmt} of {total_fmt} {unit}) [{elapsed} so far, {remaining} left]"
)


def progress(
    items: Iterable[Item], total: int, desc: str, unit: str = "it", every: float = 10.0,
    interactive: bool | None = None,
) -> Iterator[Item]:  # fmt: skip
    """items, with progress on stderr; off a terminal, a line at most every `every` seconds (none
    for shorter work)."""
    interactive = sys.stderr.isatty() if interactive is None else interactive
    if interactive:
        yield from tqdm(items, total=total, desc=desc, unit=unit, leave=False)
        return
    start = last = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every and done < total:
            last = now
            meter = tqdm.format_meter(done, total, now - start, unit=unit, bar_format=PLAIN_FORMAT)
            with contextlib.suppress(OSError):  # nobody reads stderr any more: work goes on
                print(f"{desc}: {meter}", file=sys.stderr, flush=True)
