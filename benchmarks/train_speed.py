"""Training throughput at one shape: tokens/s and achieved FLOP/s of the real training step.

    python benchmarks/train_speed.py --config nanogpt_cpu            # nanoGPT's CPU recipe shape
    python benchmarks/train_speed.py --config cpu_fast --dtype float32
    python benchmarks/train_speed.py --config shakespeare_char --device cuda --compile true

Takes every train.py key as an option. Times Trainer.train_step (forward, backward, clip,
optimizer step) on random windows of the corpus, after warm-up steps, and prints tokens/s, the
model FLOPs it achieves (6N + 12·L·C·T per token, as nanoGPT counts them) and, on the CPU, the
fraction of the machine's fp32 matrix-product ceiling, measured here as a 2048x2048 fp32 product.
Writes a record under records/.
"""

from __future__ import annotations

import statistics
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
from training.mfu import flops_per_token
from training.trainer import Trainer


@dataclass(frozen=True)
class SpeedOptions:
    steps: int = option(100, "timed steps")
    warmup: int = option(10, "untimed steps first")
    repeats: int = option(3, "timed runs; the median is shown")


def matmul_ceiling(
    n: int = 2048, dtype: torch.dtype = torch.float32, seconds: float = 2.0
) -> float:
    """FLOP/s of an n x n x n matrix product on the CPU: the most the training step could reach."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    args, run = parse_with_run_options(SpeedOptions, argv, __doc__.split("\n")[0])
    config = replace(run.config, tensorboard=False, out_dir="out/train_speed")
    name = run.config_name
    runtime = setup_runtime(config.device, config.dtype)
    data = load_dataset(config.dataset, config.data_path, config.data_dir)
    trainer = Trainer(config, runtime, data)
    tokens_per_step = trainer.tokens_per_iter

    for _ in range(args.warmup):
        trainer.train_step()
    rates = []
    for _ in range(args.repeats):
        runtime.synchronize()
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        runtime.synchronize()
        rates.append(args.steps * tokens_per_step / (time.perf_counter() - start))
    tokens_per_sec = statistics.median(rates)
    flops = flops_per_token(trainer.model, config.block_size) * tokens_per_sec

    print(machine_line(runtime.device))
    print(
        f"shape: {config.n_layer} layers, {config.n_head} heads, {config.n_embd} channels, "
        f"block {config.block_size}, batch {config.batch_size} x {trainer.accum_steps}; "
        f"{trainer.model.num_params() / 1e6:.2f}M parameters; "
        f"dtype {str(runtime.dtype).removeprefix('torch.')}, "
        f"{'compiled' if trainer.compiled else 'eager'} ({trainer.compile_reason})"
    )
    print(
        f"step: {1000 * tokens_per_step / tokens_per_sec:.1f} ms for {tokens_per_step:,} tokens "
        f"(median of {args.repeats} x {args.steps} steps after {args.warmup} warm-up)"
    )
    print(f"throughput: {tokens_per_sec:,.0f} tokens/s, {flops / 1e9:.1f} GFLOP/s of model FLOPs")
    if runtime.device.type == "cpu":
        ceiling = matmul_ceiling()
        print(
            f"fp32 2048x2048 matmul ceiling here: {ceiling / 1e9:.0f} GFLOP/s; "
            f"the step reaches {100 * flops / ceiling:.0f}% of it"
        )
    compiled = "compiled" if trainer.compiled else "eager"
    figures = {
        "config": name,
        "compiled": trainer.compiled,
        "dtype": str(runtime.dtype).removeprefix("torch."),
        "step_ms": 1000 * tokens_per_step / tokens_per_sec,
        "tokens_per_step": tokens_per_step,
        "tokens_per_sec": tokens_per_sec,
        "model_gflops": flops / 1e9,
    }
    write_record("train_speed", f"{name}-{compiled}", figures, device=str(runtime.device))
    teardown_runtime()


if __name__ == "__main__":
    sys.exit(run_main(main, prog="train_speed.py"))
