"""How fast this CPU multiplies the model's weights by one row: the heart of a cached sampling step.

    python benchmarks/matvec_speed.py              # shakespeare_char.yaml's 6 layers, 384 channels
    python benchmarks/matvec_speed.py --n_layer 2  # fewer weights, which may fit in the L3 cache

A cached step reads every weight of every block once for one new character, so its speed is how
fast the weights stream through a matrix-vector product. This times one pass over the blocks'
weights (random, fp32), in the model's order, several ways:
- `F.linear` on one row, as `GPT.forward` runs it;
- `torch.mv`;
- `PackedLinear` (model/packed.py): the weight cut into one piece per thread, as the cached step
  it;
- a row sum of each weight, `W.sum(-1)`: the same bytes read by one of torch's own reductions, with
  no matrix product: a reference for how fast a product could read them.
Prints milliseconds per pass (median and spread over --repeats, the ways alternating) and the
weights' bytes divided by that time.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass

import torch
from common import machine_line, ms_per_call
from torch.nn import functional as F

from infra.cli import option, parse_into
from infra.errors import run_main
from model import GPT, GPTConfig
from model.packed import PackedLinear


@dataclass(frozen=True)
class MatvecSpeedOptions:
    n_layer: int = option(6, "blocks (4 weights each)")
    n_embd: int = option(384, "channels")
    passes: int = option(20, "passes over the weights per timing")
    repeats: int = option(7, "timings of each way, alternating")


@torch.inference_mode()
def main(argv: list[str] | None = None) -> None:
    options = parse_into(MatvecSpeedOptions, argv, __doc__.split("\n")[0])
    config = GPTConfig(
        block_size=256, n_layer=options.n_layer, n_head=6, n_embd=options.n_embd, bias=False
    )
    model = GPT(config)
    linears = [
        layer
        for block in model.transformer.h
        for layer in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj)
    ]
    rows = {n: torch.randn(1, n) for n in {layer.in_features for layer in linears}}
    pieces = torch.get_num_threads()
    packed = [PackedLinear(layer, pieces) for layer in linears]
    weights = [layer.weight for layer in linears]
    megabytes = sum(w.numel() * w.element_size() for w in weights) / 1e6

    ways = {
        "F.linear, one row (GPT.forward)": lambda: [F.linear(rows[w.size(1)], w) for w in weights],
        "torch.mv": lambda: [torch.mv(w, rows[w.size(1)][0]) for w in weights],
        f"PackedLinear, {pieces} pieces (the cached step)": lambda: [
            p(rows[p.pieces.size(2)]) for p in packed
        ],
        "row sums W.sum(-1), no product": lambda: [w.sum(-1) for w in weights],
    }
    print(machine_line())
    print(f"CPU capability: {torch.backends.cpu.get_cpu_capability()}")
    print(
        f"{len(weights)} weights of {config.n_layer} blocks, {config.n_embd} channels: "
        f"{megabytes:.1f} MB in fp32; oneDNN off, as in the cached fp32 step"
    )
    torch.backends.mkldnn.enabled = False
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(options.repeats):
        for name, run in ways.items():
            times[name].append(ms_per_call(run, options.passes))
    for name, t in times.items():
        median = statistics.median(t)
        print(
            f"  {name:<36} {median:6.2f} ms ({min(t):.2f} to {max(t):.2f}), "
            f"{megabytes / median:5.1f} GB/s"
        )


if __name__ == "__main__":
    sys.exit(run_main(main, prog="matvec_speed.py"))
