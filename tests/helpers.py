"""Small helpers shared by the tests."""

from __future__ import annotations


def flags(**options: object) -> list[str]:
    """Command-line flags from keyword arguments: flags(max_iters=5) == ["--max_iters", "5"]."""
    return [part for key, value in options.items() for part in (f"--{key}", str(value))]
