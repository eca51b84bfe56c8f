"""What one optimizer step costs, for a config's model: AdamW over every parameter, and Muon over
the blocks' matrices two ways, torch.optim.Muon (its Newton-Schulz iteration in bf16) and MuonFP32
(ours, in fp32). Random gradients; the model's forward and backward are not timed.

    python benchmarks/optimizer_step.py --config cpu_fast

Prints milliseconds per step for each (median of --repeats timings of --steps steps).
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass

import torch
from common import machine_line, ms_per_call

from infra.cli import option, parse_into
from infra.errors import run_main
from model import GPT
from training.command_line import load_config
from training.optim import MuonFP32, adamw, block_matrices


@dataclass(frozen=True)
class OptimizerStepOptions:
    config: str = option("cpu_fast", "a config in configs/ or a path")
    steps: int = option(20, "steps per timing")
    repeats: int = option(5, "timings of each optimizer, alternating")


def main(argv: list[str] | None = None) -> None:
    options = parse_into(OptimizerStepOptions, argv, __doc__.split("\n")[0])
    config = load_config(options.config).config
    model = GPT(config.model_config(vocab_size=65))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    matrices = block_matrices(model)
    print(machine_line())
    print(
        f"{options.config}: {len(matrices)} block matrices, shapes "
        f"{sorted({tuple(p.shape) for p in matrices})}"
    )
    cpu = torch.device("cpu")
    makers = {
        "AdamW, every parameter": lambda: adamw(list(model.parameters()), config, cpu),
        "torch.optim.Muon (bf16), block matrices": lambda: torch.optim.Muon(matrices, lr=1e-9),
        "MuonFP32, block matrices": lambda: MuonFP32(matrices, lr=1e-9),
    }
    times: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(options.repeats):
        for name, make in makers.items():
            times[name].append(ms_per_call(make().step, options.steps))
    for name, t in times.items():
        print(f"{name}: {statistics.median(t):.1f} ms per step ({min(t):.1f} to {max(t):.1f})")


if __name__ == "__main__":
    sys.exit(run_main(main, prog="optimizer_step.py"))
