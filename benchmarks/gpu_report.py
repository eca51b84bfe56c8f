"""One command that measures this project on a GPU, in under 8 minutes on one H100 or H200.

    python benchmarks/gpu_report.py                              # everything but nanoGPT
    python benchmarks/gpu_report.py --nanogpt ../nanoGPT --log gpu.log
    python benchmarks/gpu_report.py --dry                        # the same plan, tiny, on the CPU

In order: the CUDA tests; shakespeare_char.yaml (nanoGPT's recipe, key for key) and gpu_fast.yaml
to val <= 1.47, with their best and exact val, tokens/s and MFU (time_to_loss.py); nanoGPT's own
GPU recipe raced against gpu_fast.yaml, when --nanogpt names a checkout (versus_nanogpt.py); what
an evaluation costs beyond its loss estimate (evaluation_cost.py); the training step eager and
compiled (train_speed.py); sampling speed (sample_speed.py); and what training a sweep's variants
as one stack buys (sweep_speed.py). Every line each step prints is
echoed as it comes, after the seconds since this report started, so a report cut short still
tells its story; --log keeps a copy. Each benchmark writes its record under records/, and
`python docs/tools/render_docs.py` turns them into the README's GPU column and the "One GPU"
section of docs/performance.md.

--dry runs the same plan on the CPU with tiny.yaml and a few steps each, its records in a
temporary directory: it checks the plan, not the GPU (the test suite runs it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from recording import ROOT

from infra.cli import option, parse_into
from infra.errors import ConfigError, run_main

TARGET = 1.47  # the best val loss of nanoGPT's GPU recipe
DRY = (
    "dry run: the plan on the CPU with tiny configs and a few steps each; its figures check "
    "that every step runs, and say nothing of a GPU's speed"
)
BENCHMARKS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ReportOptions:
    nanogpt: str | None = option(None, "a nanoGPT checkout, to race its GPU recipe")
    seeds: tuple[int, ...] = option((1337, 1338, 1339), "gpu_fast.yaml's seeds")
    log: str | None = option(None, "also write every line into this file")
    data_path: str = option("", "Tiny Shakespeare (default: the project's cache, else download)")
    dry: bool = option(False, "the plan on the CPU with tiny configs, records kept apart")


def plan(options: ReportOptions) -> list[tuple[str, list[str]]]:
    """(title, command) for each step: the GPU's, or with --dry a tiny one on the CPU."""
    python, seeds = sys.executable, [str(s) for s in options.seeds]
    data = ["--data_path", options.data_path] if options.data_path else []

    def bench(script: str, *args: str) -> list[str]:
        """A benchmark's command; those that train take the corpus's path (after `--` for
        time_to_loss.py, which hands what follows to train.py)."""
        if script in ("time_to_loss.py", "evaluation_cost.py", "train_speed.py", "sweep_speed.py"):
            args = (*args, *data) if "--" in args or script != "time_to_loss.py" else (
                *args, "--", *data
            )  # fmt: skip
        return [python, str(BENCHMARKS / script), *args]

    if options.dry:
        fast = ["--", "--device", "cpu", "--max_iters", "6", "--eval_interval", "3"]
        steps = [
            ("CUDA tests", [python, "-m", "pytest", "-q", "tests/test_cuda.py"]),
            ("tiny.yaml to target", bench("time_to_loss.py", "--config", "tiny", "--target",
                                          "4.2", "--seeds", "1", *fast)),
            ("evaluation cost", bench("evaluation_cost.py", "--config", "tiny", "--device", "cpu",
                                      "--evaluations", "2", "--inspect", "true")),
            ("training step, eager", bench("train_speed.py", "--config", "tiny", "--device",
                                           "cpu", "--steps", "3", "--warmup", "1", "--repeats",
                                           "1")),
            ("sampling", bench("sample_speed.py", "--device", "cpu", "--new", "4", "--batch",
                               "1", "--repeats", "1")),
            ("a sweep stacked", bench("sweep_speed.py", "--dry", "--config", "tiny", "--device",
                                      "cpu")),
        ]  # fmt: skip
        return steps
    cuda = ["--device", "cuda"]
    steps = [
        ("CUDA tests", [python, "-m", "pytest", "-q", "tests/test_cuda.py"]),
        ("shakespeare_char.yaml (nanoGPT's recipe) to val <= 1.47",
         bench("time_to_loss.py", "--config", "shakespeare_char", "--target", str(TARGET),
               "--seeds", "1337")),
        ("gpu_fast.yaml to val <= 1.47",
         bench("time_to_loss.py", "--config", "gpu_fast", "--target", str(TARGET), "--seeds",
               *seeds)),
    ]  # fmt: skip
    if options.nanogpt:
        steps.append((
            "nanoGPT's own GPU recipe, then gpu_fast.yaml",
            bench("versus_nanogpt.py", "--nanogpt", options.nanogpt, "--recipe", "gpu",
                  "--config", "gpu_fast", "--target", str(TARGET), "--pairs", "1"),
        ))  # fmt: skip
    steps += [
        ("evaluation cost, shakespeare_char.yaml",
         bench("evaluation_cost.py", "--config", "shakespeare_char", *cuda)),
        ("training step, eager", bench("train_speed.py", "--config", "shakespeare_char", *cuda,
                                       "--compile", "false")),
        ("training step, compiled", bench("train_speed.py", "--config", "shakespeare_char", *cuda,
                                          "--compile", "true")),
        ("sampling", bench("sample_speed.py", *cuda)),
        ("a sweep of small.yaml, stacked", bench("sweep_speed.py", "--config", "small", *cuda,
                                                 "--compiled", "true")),
        ("a sweep of shakespeare_char.yaml, stacked",
         bench("sweep_speed.py", "--config", "shakespeare_char", *cuda, "--counts", "1", "2",
               "4")),
    ]  # fmt: skip
    return steps


def main(argv: list[str] | None = None) -> int:
    options = parse_into(ReportOptions, argv, __doc__.split("\n")[0])
    if options.nanogpt and not (Path(options.nanogpt) / "train.py").is_file():
        raise ConfigError(f"--nanogpt {options.nanogpt} is not a nanoGPT checkout (no train.py)")
    log = open(options.log, "a", encoding="utf-8") if options.log else None  # noqa: SIM115
    start = time.perf_counter()

    def say(line: str) -> None:
        stamped = f"{time.perf_counter() - start:7.1f} s | {line}"
        print(stamped, flush=True)
        if log is not None:
            log.write(stamped + "\n")
            log.flush()

    failed = []
    dry = DRY if options.dry else ""
    if dry:
        say(dry)
    with tempfile.TemporaryDirectory(prefix="gpu-report-") as scratch:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if options.dry:
            env["CHARGPT_RECORDS_DIR"] = os.environ.get("CHARGPT_RECORDS_DIR") or scratch
        for title, command in plan(options):
            say(f"=== {title}")
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
            for line in process.stdout:  # a dry run's records go with its temporary folder
                say("  " + line.rstrip().replace(scratch, "(a temporary folder, not kept)"))
            if process.wait() != 0:
                failed.append(title)
                say(f"=== {title}: exit code {process.returncode}")
    say(
        f"=== done: {len(failed)} of the steps failed"
        + (f" ({', '.join(failed)})" if failed else "")
        + (f"; {dry}" if dry else "")
    )
    if log is not None:
        log.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="gpu_report.py"))
