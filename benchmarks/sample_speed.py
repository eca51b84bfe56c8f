"""Characters per second of generation with and without the KV cache.

    python benchmarks/sample_speed.py                  # shakespeare_char.yaml's model size
    python benchmarks/sample_speed.py --ckpt out/small # a trained model instead

Prints one row per batch size: the cached and the plain (full forward per character) speeds and
their ratio, for --new characters from a one-character prompt, sampled at temperature 1.
"""

from __future__ import annotations

import argparse
import time

import torch
from common import machine_line

from model import GPT, GPTConfig, generate
from training.checkpoint import load_checkpoint, resolve_checkpoint_path, restore_model
from training.runtime import resolve_device


def chars_per_second(model: GPT, batch: int, new: int, use_kv_cache: bool, repeats: int) -> float:
    device = next(model.parameters()).device
    prompt = torch.zeros(batch, 1, dtype=torch.long, device=device)
    generate(model, prompt, 8, use_kv_cache=use_kv_cache)  # warm-up: allocations, kernels
    best = float("inf")
    for seed in range(repeats):
        generator = torch.Generator(device=device).manual_seed(seed)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        generate(model, prompt, new, generator=generator, use_kv_cache=use_kv_cache)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return batch * new / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", default=None, help="checkpoint or run dir (default: random init)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--new", type=int, default=500, help="new characters per sample")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.ckpt:
        model, _ = restore_model(load_checkpoint(resolve_checkpoint_path(args.ckpt)), device)
    else:  # shakespeare_char.yaml's model: 6 layers, 6 heads, 384 channels, block 256
        torch.manual_seed(0)
        config = GPTConfig(
            vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, bias=False
        )
        model = GPT(config).to(device).eval()
    c = model.config
    print(machine_line(device))
    print(
        f"model: {c.n_layer} layers, {c.n_embd} channels, block {c.block_size}, "
        f"{model.num_params() / 1e6:.1f}M parameters; {args.new} new characters, fp32"
    )
    print(f"{'batch':>5} | {'KV cache (chars/s)':>18} | {'no cache (chars/s)':>18} | speed-up")
    for batch in args.batch:
        cached = chars_per_second(model, batch, args.new, True, args.repeats)
        plain = chars_per_second(model, batch, args.new, False, args.repeats)
        print(f"{batch:>5} | {cached:>18,.0f} | {plain:>18,.0f} | {cached / plain:6.1f}x")


if __name__ == "__main__":
    main()
