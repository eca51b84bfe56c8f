"""Small helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from model import GPTConfig

ROOT = Path(__file__).resolve().parent.parent


def tiny_gpt_config(**overrides: object) -> GPTConfig:
    """The tests' tiny model: 2 layers of 4 heads over 32 channels, a 16-character window, the
    65 characters of Tiny Shakespeare; any option changed by keyword."""
    return GPTConfig(
        **{**dict(vocab_size=65, block_size=16, n_layer=2, n_head=4, n_embd=32), **overrides}
    )


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


def run(
    argv: list[str], timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """argv as a real process in the project's root (one thread, unless env says), its output
    captured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def tensorboard_runs(run_dir: Path):
    """Every run TensorBoard finds under run_dir, read as `tensorboard --logdir` reads them
    ("." for run_dir itself)."""
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    runs = EventMultiplexer(tensor_size_guidance={"scalars": 0, "images": 0, "histograms": 0})
    runs.AddRunsFromDirectory(str(run_dir))
    runs.Reload()
    return runs


def scalar_points(run_dir: Path, tag: str) -> dict[int, float]:
    """A scalar's points in run_dir's TensorBoard run, step by step (none twice)."""
    from tensorboard.util import tensor_util

    events = tensorboard_runs(run_dir).GetAccumulator(".").Tensors(tag)
    steps = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in events]
    assert len({s for s, _ in steps}) == len(steps), f"{tag} has a step twice: {steps}"
    return dict(steps)


def start_training(argv: list[str]) -> subprocess.Popen:
    """train.py in its own process, returned once it has logged a training step."""
    process = subprocess.Popen(
        [sys.executable, "train.py", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    for line in process.stdout:
        if line.startswith("iter 5:"):
            return process
    raise AssertionError(f"train.py ended before training: {process.communicate()[1]}")
