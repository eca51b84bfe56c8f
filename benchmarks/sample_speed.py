"""Characters per second of generation with and without the KV cache.

    python benchmarks/sample_speed.py                  # shakespeare_char.yaml's model size
    python benchmarks/sample_speed.py --ckpt out/small # a trained model instead

Prints one row per batch size: the cached and the plain (full forward per character) speeds and
their ratio, for --new characters from a one-character prompt, sampled at temperature 1. Then the
time of one cached step at batch 1: GPT.forward with the cache, and the step generation takes on
this device: on the CPU the copy packed for matrix-vector products (model/packed.py), on CUDA
the step replayed as a CUDA graph (model/graphed.py).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch
from common import machine_line
from recording import write_record

from checkpoint import load_checkpoint, resolve_checkpoint_path, restore_model
from infra.cli import option, parse_into
from infra.device import Runtime, resolve_device
from infra.errors import run_main
from model import GPT, GPTConfig, KVCache, generate
from model.graphed import GraphedStep
from model.packed import fastest_step_model, one_token_step, pack_linears


@dataclass(frozen=True)
class SampleSpeedOptions:
    ckpt: str | None = option(None, "checkpoint or run dir (default: random init)")
    device: str = option("cpu", "cpu, cuda, cuda:N or mps")
    new: int = option(500, "new characters per sample")
    batch: tuple[int, ...] = option((1, 8), "batch sizes, one row each")
    repeats: int = option(3, "best of this many runs")


def synchronize(device: torch.device) -> None:
    Runtime(device, torch.float32).synchronize()


def generation_seconds(model: GPT, batch: int, new: int, use_kv_cache: bool, seed: int) -> float:
    device = next(model.parameters()).device
    prompt = torch.zeros(batch, 1, dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    synchronize(device)
    start = time.perf_counter()
    generate(model, prompt, new, generator=generator, use_kv_cache=use_kv_cache)
    synchronize(device)
    return time.perf_counter() - start


def chars_per_second(model: GPT, batch: int, new: int, repeats: int) -> tuple[float, float]:
    """Best over repeats of the cached and the plain speeds. The runs alternate, so that both
    meet the same machine: on a shared one, memory bandwidth varies from minute to minute."""
    generation_seconds(model, batch, 8, True, 0)  # warm-up: allocations, kernels
    generation_seconds(model, batch, 8, False, 0)
    cached = plain = float("inf")
    for seed in range(repeats):
        cached = min(cached, generation_seconds(model, batch, new, True, seed))
        plain = min(plain, generation_seconds(model, batch, new, False, seed))
    return batch * new / cached, batch * new / plain


@torch.inference_mode()  # as generation runs
def step_ms(model: GPT, step, repeats: int, filled: int, steps: int = 100) -> float:
    """Best over repeats of the mean time of one cached step, from position `filled` on."""
    device = next(model.parameters()).device
    tokens = torch.zeros(1, filled, dtype=torch.long, device=device)
    steps = min(steps, model.config.block_size - filled)
    best = float("inf")
    for _ in range(repeats):
        cache = KVCache(model.config.n_layer, model.config.block_size)
        model(tokens, kv_cache=cache)
        step(tokens[:, -1], cache)  # untimed: a CUDA graph is recorded at its first step
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps - 1):
            step(tokens[:, -1], cache)
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / (steps - 1) * 1e3)
    return best


def main(argv: list[str] | None = None) -> None:
    args = parse_into(SampleSpeedOptions, argv, __doc__.split("\n")[0])
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
    rows = []
    for batch in args.batch:
        cached, plain = chars_per_second(model, batch, args.new, args.repeats)
        print(f"{batch:>5} | {cached:>18,.0f} | {plain:>18,.0f} | {cached / plain:6.1f}x")
        rows.append({"batch": batch, "cached_chars_per_sec": cached, "plain_chars_per_sec": plain})
    ways = {"GPT.forward(token, kv_cache)": lambda t, cache: model(t[:, None], kv_cache=cache)}
    if device.type == "cpu":  # the two one_token_step's, of which generation takes the faster
        packed = pack_linears(model)
        pieces = torch.get_num_threads()  # pack_linears' default: one piece per thread
        ways["the model, oneDNN off in fp32"] = lambda t, cache: one_token_step(model, t, cache)
        name = f"packed: {packed.packed} of {4 * c.n_layer} weights in {pieces} pieces"
        ways[name] = lambda t, cache: one_token_step(packed, t, cache)
    if device.type == "cuda":
        ways["replayed as a CUDA graph"] = GraphedStep(model)  # as generation does on CUDA
    filled = c.block_size // 2  # the window's fill right after a jump
    print(f"one cached step at batch 1, position {filled} on:")
    steps = {}
    for name, step in ways.items():
        steps[name] = step_ms(model, step, args.repeats, filled)
        print(f"  {name:<40} {steps[name]:6.2f} ms")
    chosen = None
    if device.type == "cpu":
        chosen = "packed" if fastest_step_model(model) is not model else "the model"
        print(f"generation's own measurement chose: {chosen}")
    figures = {
        "model": "trained" if args.ckpt else "shakespeare_char-size",
        "chosen_step": chosen,
        "new": args.new,
        "rows": rows,
        "step_ms": steps,
    }
    write_record("sample_speed", f"batch{'-'.join(map(str, args.batch))}", figures, str(device))


if __name__ == "__main__":
    sys.exit(run_main(main, prog="sample_speed.py"))
