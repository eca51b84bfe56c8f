"""The import graph: each folder stands only on the layers below it, and no two files import each
other, however indirectly. Read from the source with ast, so it needs no import to run."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import ROOT

# Each layer, and the project's packages it may import (besides its own).
ALLOWED = {
    "infra": set(),
    "model": {"infra"},
    "data": {"infra"},
    "checkpoint": {"infra", "model", "data"},
    "training": {"infra", "model", "data", "checkpoint", "viz"},
    "viz": {"infra", "model", "data", "checkpoint"},
    "sample": {"infra", "model", "data", "checkpoint", "viz"},
    "evaluate": {"infra", "model", "data", "checkpoint"},
    "train": {"infra", "model", "data", "checkpoint", "training", "viz"},
}
PACKAGES = {"infra", "model", "data", "checkpoint", "training", "viz"}
SCRIPTS = {"train", "sample", "evaluate"}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the layers above."""
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join(parts)] = path
    for script in SCRIPTS:
        files[script] = ROOT / f"{script}.py"
    return files


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules a file imports (an import of a package counts as its __init__)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name in known:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def layer(module: str) -> str:
    return module.split(".")[0]


def test_every_layer_imports_only_the_layers_below_it():
    leaks = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if layer(target) != layer(module) and layer(target) not in ALLOWED[layer(module)]
    )
    assert leaks == []


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_two_files_import_each_other_however_indirectly():
    # a package's __init__ re-exporting its modules is the package itself, not a cycle
    edges = {
        module: {t for t in targets if not module.startswith(t + ".")}
        for module, targets in graph().items()
    }
    assert find_cycle(edges) is None


@pytest.mark.parametrize(
    "module, forbidden",
    [
        ("infra/device.py", "from model import GPT"),  # the bottom imports nothing above it
        ("data/corpus.py", "from training.config import TrainConfig"),
        ("sample.py", "from training.optim import describe_optimizers"),
        ("model/gpt.py", "from checkpoint import load_model"),
    ],
)
def test_the_layer_test_catches_a_leak(module, forbidden, tmp_path, monkeypatch):
    """Each leak of the kind the layering forbids, added to a copy of the file, is caught."""
    import test_layers

    path = ROOT / module
    leaked = tmp_path / path.name
    leaked.write_text(forbidden + "\n" + path.read_text())
    files = module_files()
    name = next(n for n, p in files.items() if p == path)
    monkeypatch.setattr(test_layers, "module_files", lambda: {**files, name: leaked})
    with pytest.raises(AssertionError):
        test_every_layer_imports_only_the_layers_below_it()


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.e2e
@pytest.mark.parametrize(
    "argv",
    [
        ["train.py", "--config", "tiny", "--help"],
        ["sample.py", "--help"],
        ["docs/tools/render_docs.py", "--check"],
    ],
)
def test_scripts_run_from_any_directory(tmp_path, argv):
    """The project is installed (`-e .` in requirements.txt): its scripts need no particular
    working directory and no path of their own."""
    import subprocess
    import sys

    script, *options = argv
    result = subprocess.run(
        [sys.executable, str(ROOT / script), *options], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
