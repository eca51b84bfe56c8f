"""What every benchmark prints first: the machine and the software it measured."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from infra.cli import Parser, fields_of, parse_into
from training.command_line import TrainArgs, load_config, parse_command_line


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(device: torch.device | str = "cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return f"machine: {where}; torch {torch.__version__}, Python {platform.python_version()}"


def parse_with_run_options(options: type, argv: list[str] | None, description: str):
    """The benchmark's own options (the fields of the dataclass `options`), and the rest of argv
    read as train.py reads its command line: --config NAME and any key of a config."""
    parser = Parser(description, epilog="Any option of train.py (--config NAME, --KEY VALUE) too.")
    parser.add_fields(options)
    namespace, rest = parser.parse_known_args(argv)
    run: TrainArgs = load_config(**parse_command_line(rest))
    return options(**fields_of(options, namespace)), run


def parse_with_passthrough(options: type, argv: list[str] | None, description: str):
    """The benchmark's own options (the fields of the dataclass `options`) from what comes before
    `--`, and the list of what follows it, for train.py as it is."""
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    return parse_into(options, argv[:cut], description), argv[cut + 1 :]


def ms_per_call(run: Callable[[], object], calls: int) -> float:
    """Milliseconds per call of run, over `calls` calls after one untimed call (allocations,
    an optimizer's state)."""
    run()
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - start) / calls * 1e3
