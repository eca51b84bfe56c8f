"""Which attention kernel trains faster here: the formula written out (math) against SDPA.

    python benchmarks/attention_kernel.py --config small
    python benchmarks/attention_kernel.py --config cpu_fast --pairs 7

Builds the config's Trainer twice, one per kernel, with the same weights and batches, and times
--steps whole training steps of each (forward, backward, clip, optimizer step), alternating, for
--pairs pairs: both kernels meet the machine in the same state. Prints each kernel's median step
and the median of the pairs' ratios (sdpa's time over math's: above 1, math is faster), which is
what `attn_impl: auto` is chosen by (model/gpt.py, attention_kernel). Takes every train.py key
as an option; writes a record under records/.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, replace

from common import machine_line, parse_with_run_options
from recording import write_record

from data import load_dataset
from infra.cli import option
from infra.device import setup_runtime, teardown_runtime
from infra.errors import run_main
from training.trainer import Trainer


@dataclass(frozen=True)
class KernelOptions:
    steps: int = option(20, "timed steps of each kernel per pair")
    pairs: int = option(5, "alternating pairs; the median ratio is shown")


def main(argv: list[str] | None = None) -> None:
    args, run = parse_with_run_options(KernelOptions, argv, __doc__.split("\n")[0])
    config = replace(run.config, tensorboard=False, out_dir="out/attention_kernel")
    runtime = setup_runtime(config.device, config.dtype)
    data = load_dataset(config.dataset, config.data_path, config.data_dir)
    trainers = {k: Trainer(replace(config, attn_impl=k), runtime, data) for k in ("math", "sdpa")}
    ms: dict[str, list[float]] = {k: [] for k in trainers}
    for trainer in trainers.values():  # warm-up: allocations, the optimizer's state
        for _ in range(3):
            trainer.train_step()
    for _ in range(args.pairs):
        for kernel, trainer in trainers.items():
            runtime.synchronize()
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step()
            runtime.synchronize()
            ms[kernel].append((time.perf_counter() - start) / args.steps * 1e3)
    ratios = [s / m for s, m in zip(ms["sdpa"], ms["math"], strict=True)]
    dtype = str(runtime.dtype).removeprefix("torch.")
    print(machine_line(runtime.device))
    print(f"{run.config_name}: block {config.block_size}, head size "
          f"{config.n_embd // config.n_head}, batch {config.batch_size}, {dtype}")  # fmt: skip
    for kernel, times in ms.items():
        print(f"  {kernel:4}: {statistics.median(times):6.1f} ms a step (median of {args.pairs})")
    print(f"  sdpa / math: {statistics.median(ratios):.2f}x "
          f"({min(ratios):.2f}x to {max(ratios):.2f}x over the pairs)")  # fmt: skip
    figures = {"config": run.config_name, "dtype": dtype, "steps": args.steps, "ms": ms,
               "sdpa_over_math": statistics.median(ratios)}  # fmt: skip
    write_record("attention_kernel", f"{run.config_name}-{dtype}", figures, str(runtime.device))
    teardown_runtime()


if __name__ == "__main__":
    sys.exit(run_main(main, prog="attention_kernel.py"))
