"""What stacking a sweep's variants buys: variant-steps per second for N variants trained as one
stack (training/stack.py) against the same N one after another, with the same settings.

    python benchmarks/sweep_speed.py --config small --device cuda
    python benchmarks/sweep_speed.py --config shakespeare_char --device cuda --counts 1 2 4
    python benchmarks/sweep_speed.py --config small --device cpu --attn_impl math --counts 1 2 4
    python benchmarks/sweep_speed.py --dry          # tiny, a few steps: checks the plan

Takes every train.py key as an option. For each N, N trainers of the config (seeds 1..N) take
`warmup` untimed steps, then `steps` timed ones, one after another and then as one stack, eager
and (with --compile) through torch.compile; the peak CUDA memory of each is kept. Writes a
record under records/ (with --dry, the figures check the plan and say nothing of the speed).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace

import torch
from common import machine_line, parse_with_run_options
from recording import write_record

from data import load_dataset
from infra.cli import option
from infra.device import setup_runtime, teardown_runtime
from infra.errors import run_main
from training.stack import Stack
from training.trainer import Trainer


@dataclass(frozen=True)
class SweepSpeedOptions:
    counts: tuple[int, ...] = option((1, 2, 4, 8, 16), "the numbers of variants")
    steps: int = option(20, "timed steps")
    warmup: int = option(3, "untimed steps first")
    compiled: bool = option(False, "also time both through torch.compile")
    dry: bool = option(False, "tiny.yaml and two steps each: checks the plan, measures nothing")


def timed(step, steps: int, warmup: int, runtime) -> tuple[float, float | None]:
    """Seconds per call of step after warm-up, and the peak CUDA memory (GiB) while it ran."""
    for _ in range(warmup):
        step()
    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    runtime.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    runtime.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = (
        torch.cuda.max_memory_allocated(runtime.device) / 2**30
        if runtime.device.type == "cuda"
        else None
    )
    return seconds, peak


def main(argv: list[str] | None = None) -> None:
    options, run = parse_with_run_options(SweepSpeedOptions, argv, __doc__.split("\n")[0])
    config = replace(run.config, tensorboard=False, compile=False)
    if options.dry:
        config = replace(config, n_layer=1, n_embd=16, n_head=2, batch_size=2, block_size=16)
        options = replace(options, counts=(1, 2), steps=2, warmup=1, compiled=False)
    runtime = setup_runtime(config.device, config.dtype)
    data = load_dataset(config.dataset, config.data_path, config.data_dir)
    print(machine_line(runtime.device))
    rows = []
    for n in options.counts:
        for compiled in (False, True) if options.compiled else (False,):
            variants = [replace(config, seed=seed, compile=compiled) for seed in range(1, n + 1)]
            trainers = [Trainer(c, runtime, data) for c in variants]

            def one_after_another(trainers=trainers):
                for trainer in trainers:
                    trainer.train_step()

            alone, alone_peak = timed(one_after_another, options.steps, options.warmup, runtime)
            stack = Stack([Trainer(c, runtime, data) for c in variants], compiled=compiled)
            stacked, stacked_peak = timed(
                lambda stack=stack: stack.step(stack.trainers), options.steps, options.warmup,
                runtime,
            )  # fmt: skip
            row = {"variants": n, "compiled": compiled, "alone_steps_per_s": n / alone,
                   "stacked_steps_per_s": n / stacked, "speedup": alone / stacked,
                   "alone_peak_gib": alone_peak, "stacked_peak_gib": stacked_peak}  # fmt: skip
            rows.append(row)
            peaks = f"; peak {alone_peak:.2f} / {stacked_peak:.2f} GiB" if alone_peak else ""
            print(
                f"{n:3d} variants{' compiled' if compiled else ''}: one after another "
                f"{n / alone:8.2f} variant-steps/s, stacked {n / stacked:8.2f} "
                f"({alone / stacked:.2f}x){peaks}"
            )
            del trainers, stack
    teardown_runtime()
    label = f"{run.config_name}-dry" if options.dry else run.config_name
    figures = {
        "config": run.config_name, "dry": options.dry, "steps": options.steps,
        "attn_impl": config.attn_impl, "dtype": str(runtime.dtype), "rows": rows,
    }  # fmt: skip
    write_record("sweep_speed", label, figures, device=str(runtime.device))


if __name__ == "__main__":
    sys.exit(run_main(main, prog="sweep_speed.py"))
