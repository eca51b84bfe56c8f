"""Wall-clock time to a validation loss: the whole `python train.py` process, as a user runs it.

    python benchmarks/time_to_loss.py --config cpu_fast --target 1.886 --seeds 1 2 3
    python benchmarks/time_to_loss.py --config nanogpt_cpu --target 1.886 -- --max_iters 1000

For each seed it starts train.py in a fresh directory, clocks from the moment it launches the
process
(Python start-up, imports, data loading and every evaluation included), and prints: the seconds at
which an evaluation first reported val loss <= target (or that none did), the whole process's wall
time, the final and best val loss (the trainer's estimates), the exact val loss the run ends with,
the median training tokens/s (and on known GPUs the median MFU train.py logs), and peak memory
(the process's maximum RSS on the CPU; torch.cuda.max_memory_allocated on CUDA). Then the median and
the spread (min to max) over the seeds. Every evaluation line is echoed as it comes, with the
seconds since its process was launched.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from common import machine_line, parse_with_passthrough
from recording import write_record

from infra.cli import option
from infra.errors import run_main

ROOT = Path(__file__).resolve().parent.parent
EVAL_LINE = re.compile(r"^iter (\d+): train loss ([\d.]+), val loss ([\d.naif]+)")
LOG_LINE = re.compile(r"^iter (\d+): batch loss [\d.naif]+, lr \S+, ([\d,]+) tok/s")
MFU = re.compile(r", mfu ([\d.]+)%")
PEAK_CUDA = re.compile(r"peak CUDA memory ([\d.]+) GiB")
EXACT_LINE = re.compile(r"^exact val loss ([\d.]+) over all")


@dataclass(frozen=True)
class TimeToLossOptions:
    config: str = option(help="a config in configs/ or a path")
    target: float = option(help="val loss to reach")
    seeds: tuple[int, ...] = option((1337, 1338, 1339), "one run per seed")
    keep: str | None = option(None, "copy each run's logs here (for plot_curves.py)")


@dataclass
class Run:
    seed: int
    seconds_to_target: float | None
    wall: float
    final_val: float
    best_val: float
    exact_val: float
    tokens_per_sec: float
    mfu_percent: float | None  # None where train.py logs none (CPUs, unknown GPUs)
    peak_memory_gib: float
    returncode: int


def run_once(config: str, target: float, seed: int, extra: list[str], keep: Path | None) -> Run:
    with tempfile.TemporaryDirectory() as out_dir:
        argv = [
            sys.executable,
            "train.py",
            "--config",
            config,
            "--seed",
            str(seed),
            "--out_dir",
            out_dir,
            *extra,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
        reached, vals, rates, mfus, peak_cuda, exact = None, [], [], [], None, float("nan")
        for line in process.stdout:
            now = time.perf_counter() - start
            if match := EVAL_LINE.match(line):
                print(f"{now:8.1f} s  {line.rstrip()}", flush=True)  # a cut-short run's story
                val = float(match.group(3))
                vals.append(val)
                if reached is None and val <= target:
                    reached = now
            elif match := LOG_LINE.match(line):
                rates.append(float(match.group(2).replace(",", "")))
                if mfu := MFU.search(line):
                    mfus.append(float(mfu.group(1)))
            elif match := PEAK_CUDA.search(line):
                peak_cuda = float(match.group(1))
            elif match := EXACT_LINE.match(line):
                exact = float(match.group(1))
        process.wait()
        wall = time.perf_counter() - start
        if keep is not None:  # the run's TensorBoard files, for benchmarks/plot_curves.py
            kept = keep / f"{config}-seed{seed}"
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(out_dir, kept, ignore=shutil.ignore_patterns("*.pt"))
    rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest child so far
    peak = peak_cuda if peak_cuda is not None else max(rss_kib, before) / 2**20
    return Run(
        seed=seed,
        seconds_to_target=reached,
        wall=wall,
        final_val=vals[-1] if vals else float("nan"),
        best_val=min(vals) if vals else float("nan"),
        exact_val=exact,
        tokens_per_sec=statistics.median(rates[1:] or rates or [0.0]),  # first interval warms up
        mfu_percent=statistics.median(mfus[1:] or mfus) if mfus else None,
        peak_memory_gib=peak,
        returncode=process.returncode,
    )


def spread(values: list[float], fmt: str = ".2f") -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}} to {max(values):{fmt}})"


def print_run(run: Run) -> None:
    to_target = f"{run.seconds_to_target:.1f}" if run.seconds_to_target else "not reached"
    failed = f"  (exit code {run.returncode})" if run.returncode else ""
    mfu = f", mfu {run.mfu_percent:.1f}%" if run.mfu_percent is not None else ""
    print(
        f"{run.seed:>6} | {to_target:>13} | {run.wall:>8.1f} | {run.final_val:>9.4f} | "
        f"{run.best_val:>8.4f} | {run.exact_val:>9.4f} | {run.tokens_per_sec:>9,.0f} | "
        f"{run.peak_memory_gib:.2f} GiB{mfu}{failed}",
        flush=True,
    )


HEADER = (
    f"{'seed':>6} | {'to target (s)':>13} | {'wall (s)':>8} | {'final val':>9} | "
    f"{'best val':>8} | {'exact val':>9} | {'tokens/s':>9} | peak mem"
)


def main(argv: list[str] | None = None) -> int:
    # everything after `--` goes to train.py as it is
    args, extra = parse_with_passthrough(TimeToLossOptions, argv, __doc__.split("\n")[0])
    keep = Path(args.keep) if args.keep else None

    print(machine_line("cpu"))
    if torch.cuda.is_available():  # train.py picks it unless the config says otherwise
        print(machine_line("cuda"))
    print(f"config {args.config}, target val loss {args.target}, extra options: {extra or 'none'}")
    print(HEADER)
    runs = []
    for seed in args.seeds:
        run = run_once(args.config, args.target, seed, extra, keep)
        runs.append(run)
        print_run(run)
    reached = [r.seconds_to_target for r in runs if r.seconds_to_target is not None]
    print(f"median (min to max) over {len(runs)} seeds:")
    print(
        f"  reached the target: {len(reached)} of {len(runs)}"
        + (f"; seconds to target {spread(reached)}" if reached else "")
    )
    print(f"  whole-process wall seconds {spread([r.wall for r in runs])}")
    print(f"  final val loss {spread([r.final_val for r in runs], '.4f')}")
    exact = spread([r.exact_val for r in runs], ".4f")
    print(f"  exact val loss (every character, at the end of the run) {exact}")
    print(f"  tokens/s {spread([r.tokens_per_sec for r in runs], ',.0f')}")
    mfus = [r.mfu_percent for r in runs if r.mfu_percent is not None]
    if mfus:
        print(f"  MFU % {spread(mfus, '.1f')}")
    print(f"  peak memory GiB {spread([r.peak_memory_gib for r in runs])}")
    label = args.config if not extra else f"{args.config}-ablation"
    figures = {"config": args.config, "target": args.target, "extra": extra}
    write_record("time_to_loss", label, {**figures, "runs": [asdict(r) for r in runs]})
    failed = [r.seed for r in runs if r.returncode]
    if failed:
        print(f"train.py failed for seed(s) {', '.join(map(str, failed))}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="time_to_loss.py"))
