"""Small helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def flags(**options: object) -> list[str]:
    """Command-line flags from keyword arguments: flags(max_iters=5) == ["--max_iters", "5"]."""
    return [part for key, value in options.items() for part in (f"--{key}", str(value))]


def torchrun(processes: int) -> list[str]:
    """The command that starts `processes` ranks on this machine with torchrun."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
    ]


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """argv as a real process in the project's root, its output captured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
