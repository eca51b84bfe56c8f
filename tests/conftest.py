"""Shared fixtures. Tests run on the CPU, deterministically, in seconds each.

Tiny Shakespeare is never downloaded by the tests: they take the project's cache
(data/shakespeare_char/input.txt, where .ci/run puts it) or ../shared/data/tinyshakespeare.txt.
Without either they are skipped, except under CI=true, where a missing corpus is a failure.

Tests marked e2e run something end to end: a command (train.py, sample.py, evaluate.py) or its
training run, a real process (torchrun, a signal, a kernel) or a browser. `python -m pytest -m
"not e2e"` runs the rest, the quick subset.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import flags

from data import PreparedData, load_dataset
from data.corpus import SHAKESPEARE_CACHE
from training.command_line import build_config, read_config_file
from training.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent

CORPUS_CANDIDATES = (SHAKESPEARE_CACHE, ROOT.parent / "shared" / "data" / "tinyshakespeare.txt")


@pytest.fixture(autouse=True)
def _deterministic_cpu():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def shakespeare_path() -> Path:
    for candidate in CORPUS_CANDIDATES:
        if candidate.is_file():
            return candidate
    message = "Tiny Shakespeare not found at " + " or ".join(map(str, CORPUS_CANDIDATES))
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shakespeare(shakespeare_path: Path, tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    """The prepared corpus, in a temporary data_dir so tests never touch the project's cache."""
    return load_dataset("shakespeare_char", shakespeare_path, tmp_path_factory.mktemp("prepared"))


@pytest.fixture
def tiny_config(shakespeare_path: Path, shakespeare: PreparedData, tmp_path: Path):
    """A factory: configs/tiny.yaml with the corpus, a private out_dir, and any overrides."""

    def make(**overrides) -> TrainConfig:
        values = read_config_file(ROOT / "configs" / "tiny.yaml")
        values.update(
            data_path=str(shakespeare_path),
            data_dir=str(shakespeare.data_dir),
            out_dir=str(tmp_path / "run"),
            device="cpu",
            tensorboard=False,
        )
        values.update(overrides)
        return build_config(values, "test")

    return make


@pytest.fixture
def tiny_argv(shakespeare_path: Path, shakespeare: PreparedData, tmp_path: Path):
    """A factory: train.py arguments for a tiny.yaml run on the CPU in a private out_dir
    (tmp_path / out), followed by any extra arguments. The drawings for TensorBoard are off
    (--inspect false): they cost a second an evaluation, and tests/test_inspect.py tests them."""

    def make(*extra: str, out: str = "run") -> list[str]:
        paths = flags(
            data_path=shakespeare_path, data_dir=shakespeare.data_dir, out_dir=tmp_path / out
        )
        return ["--config", "tiny", "--device", "cpu", "--inspect", "false", *paths, *extra]

    return make


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, shakespeare_path: Path, shakespeare: PreparedData) -> Path:
    """A run directory written once per suite by a real tiny.yaml run (last.pt, best.pt)."""
    import train

    root = tmp_path_factory.mktemp("tiny_run")
    argv = flags(
        config="tiny",
        device="cpu",
        inspect="false",
        data_path=shakespeare_path,
        data_dir=shakespeare.data_dir,
        out_dir=root / "run",
    )
    assert train.main(argv) == 0
    return root / "run"
