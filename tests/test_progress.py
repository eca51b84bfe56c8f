"""Progress wherever a user waits: plain lines with the time left when nobody watches a terminal,
a bar when one does; the work itself unchanged."""

from __future__ import annotations

import re

import infra.progress
from infra.progress import progress


def test_off_a_terminal_a_line_says_how_far_and_how_long_is_left(monkeypatch, capsys):
    clock = iter(float(t) for t in range(0, 1000, 4))  # each item takes 4 s
    monkeypatch.setattr(infra.progress.time, "monotonic", lambda: next(clock))
    items = list(progress(range(10), 10, "scoring", unit="batch", every=10, interactive=False))
    assert items == list(range(10))
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("scoring: ") for line in lines)
    first = lines[0]  # after the third item: 12 s in, 7 more items at 4 s each
    assert re.search(r"30% \(3 of 10 batch\) \[00:12 so far, 00:28 left\]", first), first
    assert not any("10 of 10" in line for line in lines)  # the end is not a progress line


def test_short_work_prints_nothing_and_a_terminal_gets_a_bar(capsys):
    assert list(progress(range(3), 3, "quick", interactive=False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    assert list(progress(range(3), 3, "bar", interactive=True)) == [0, 1, 2]
    assert "bar" in capsys.readouterr().err  # tqdm's
