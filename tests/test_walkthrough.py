"""docs/attention.md runs: every Python block, in order, in one namespace, as a reader would run
them; each block asserts its own claim against the step before or the project's code."""

from __future__ import annotations

import re

from helpers import ROOT

WALKTHROUGH = ROOT / "docs" / "attention.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", WALKTHROUGH.read_text(encoding="utf-8"), re.S)


def test_the_attention_walkthrough_runs_and_checks_itself():
    blocks = python_blocks()
    assert len(blocks) >= 6
    namespace: dict = {"__name__": "walkthrough"}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"docs/attention.md, block {number}", "exec"), namespace)


def test_a_broken_block_fails():
    namespace: dict = {}
    broken = python_blocks()[1].replace("wei.sum(dim=1, keepdim=True)", "2")
    exec(compile(python_blocks()[0], "block 1", "exec"), namespace)
    try:
        exec(compile(broken, "block 2, broken", "exec"), namespace)
    except AssertionError:
        return
    raise AssertionError("a wrong average passed its own check")
