"""Benchmark records: what was measured, where, on which code, with which command.

Every benchmark that backs a figure in the documents writes one JSON file under records/:

    {"benchmark": "time_to_loss", "date": "2026-12-01T10:30:00Z", "commit": "abc1234",
     "machine": {"cpu": ..., "capability": "AVX512", "native_bf16": true, "kind": ...},
     "command": "python benchmarks/time_to_loss.py --config small ...", ...figures...}

`docs/tools/render_docs.py` turns the newest record of each kind into the tables of README.md
and docs/performance.md, and a test fails when a table differs from what the records give.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from common import cpu_name

from infra.device import NATIVE_BF16_ENV, cpu_has_native_bf16

ROOT = Path(__file__).resolve().parent.parent
# CHARGPT_RECORDS_DIR puts them elsewhere (a dry run of gpu_report.py, the tests)
RECORDS_DIR = Path(os.environ.get("CHARGPT_RECORDS_DIR") or ROOT / "records")

# The kinds of machine the tables have a column or a section for.
AVX2 = "AVX2 CPU"
NATIVE_BF16 = "native-bf16 CPU"


def machine_kind(capability: str, native_bf16: bool, gpu: str | None) -> str:
    """AVX2 CPU (bf16 emulated), native-bf16 CPU (AVX512-BF16 or AMX), or the GPU's name."""
    if gpu:
        return gpu
    return NATIVE_BF16 if native_bf16 else AVX2


def describe_machine(device: str = "cpu") -> dict[str, Any]:
    """The machine a benchmark ran on. native_bf16 is the hardware's answer: a record made with
    CHARGPT_NATIVE_BF16 set says so in `forced_native_bf16`."""
    forced = os.environ.get(NATIVE_BF16_ENV)
    os.environ.pop(NATIVE_BF16_ENV, None)
    try:
        native = cpu_has_native_bf16()
    finally:
        if forced is not None:
            os.environ[NATIVE_BF16_ENV] = forced
    gpu = None
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.device(device))
    capability = torch.backends.cpu.get_cpu_capability()
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "capability": capability,
        "native_bf16": native,
        "forced_native_bf16": forced,
        "gpu": gpu,
        "kind": machine_kind(capability, native, gpu),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def current_commit() -> str:
    """The short commit of the code measured, with '+changes' when tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short=7", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit}+changes" if dirty else commit


def command_line() -> str:
    """This process's command, as a user would type it from the project's root."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(ROOT))
    except ValueError:
        shown = str(script)
    return shlex.join(["python", shown, *sys.argv[1:]])


def finite_or_none(value: Any) -> Any:
    """value with every NaN or infinity (a target never reached, a run that failed) as None, so
    the record is plain JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def write_record(benchmark: str, label: str, figures: dict[str, Any], device: str = "cpu") -> Path:
    """Write records/<date>-<benchmark>-<label>-<machine>.json and return its path."""
    now = datetime.datetime.now(datetime.timezone.utc)
    machine = describe_machine(device)
    record = {
        "benchmark": benchmark,
        "date": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": current_commit(),
        "machine": machine,
        "command": command_line(),
        **finite_or_none(figures),
    }
    slug = machine["kind"].lower().replace(" ", "-")
    RECORDS_DIR.mkdir(exist_ok=True)
    path = RECORDS_DIR / f"{now:%Y-%m-%dT%H%M%S}-{benchmark}-{label}-{slug}.json"
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False, allow_nan=False) + "\n")
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"record: {shown}")
    return path
