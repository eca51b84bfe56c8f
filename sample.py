"""Generate text from a checkpoint: `python sample.py --ckpt out/small` (see --help)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from data import DataError
from model import generate_tokens
from training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    resolve_checkpoint_path,
    restore_model,
)
from training.runtime import DeviceError, resolve_device, resolve_dtype

SEPARATOR = "\n" + "-" * 40


class UsageError(Exception):
    pass


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake is one line on stderr and exit code 2, without the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description="Generate text from a checkpoint of train.py.")
    p.add_argument(
        "--ckpt",
        required=True,
        help="a checkpoint file, or a run directory (its best.pt, else last.pt)",
    )
    p.add_argument("--prompt", default=None, help="text to continue (default: a newline)")
    p.add_argument("--prompt_file", default=None, help="read the prompt from this file")
    p.add_argument("--num_samples", type=int, default=1, help="how many samples (default 1)")
    p.add_argument("--max_new_tokens", type=int, default=500, help="characters per sample (500)")
    p.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        help="below 1 is safer, above 1 wilder; 0 is greedy (default 0.8)",
    )
    p.add_argument("--top_k", type=int, default=None, help="sample only the k likeliest")
    p.add_argument(
        "--top_p",
        type=float,
        default=None,
        help="sample only the likeliest characters whose mass reaches p",
    )
    p.add_argument("--seed", type=int, default=1337, help="the same seed gives the same text")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="print characters as they come (default: on a terminal)",
    )
    p.add_argument(
        "--no_kv_cache",
        action="store_true",
        help="recompute the whole context for every character (slow; for comparison)",
    )
    return p


def check_options(args: argparse.Namespace) -> None:
    if args.temperature < 0:
        raise UsageError(f"--temperature must be 0 (greedy) or more, got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top_k must be at least 1, got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UsageError(f"--top_p must be in (0, 1], got {args.top_p}")
    if args.num_samples < 1:
        raise UsageError(f"--num_samples must be at least 1, got {args.num_samples}")
    if args.max_new_tokens < 0:
        raise UsageError(f"--max_new_tokens must not be negative, got {args.max_new_tokens}")
    if args.prompt is not None and args.prompt_file is not None:
        raise UsageError("give --prompt or --prompt_file, not both")


def read_prompt(args: argparse.Namespace) -> str:
    if args.prompt_file is not None:
        path = Path(args.prompt_file)
        if not path.is_file():
            raise UsageError(f"--prompt_file {path} does not exist")
        try:
            prompt = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"--prompt_file {path} is not UTF-8 text") from None
    else:
        prompt = "\n" if args.prompt is None else args.prompt
    if not prompt:
        raise UsageError("the prompt is empty; give at least one character")
    return prompt


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        check_options(args)
        prompt = read_prompt(args)
        device = resolve_device(args.device)
        checkpoint = load_checkpoint(resolve_checkpoint_path(args.ckpt), map_location=device)
        model, tokenizer = restore_model(checkpoint, device)
        prompt_ids = tokenizer.encode(prompt)
    except UsageError as e:
        print(f"sample.py: error: {e}", file=sys.stderr)
        return 2
    except (CheckpointError, DataError, DeviceError) as e:
        print(f"sample.py: error: {e}", file=sys.stderr)
        return 1

    block_size = model.config.block_size
    if len(prompt_ids) > block_size:
        print(
            f"note: the prompt has {len(prompt_ids)} characters; the model sees only the last "
            f"{block_size} (its context)",
            file=sys.stderr,
        )
    stream = sys.stdout.isatty() if args.stream is None else args.stream
    dtype = resolve_dtype("auto", device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    idx = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    try:
        for i in range(args.num_samples):
            if i:
                print(SEPARATOR)
            print(prompt, end="", flush=stream)
            new_tokens = generate_tokens(
                model,
                idx,
                args.max_new_tokens,
                temperature=args.temperature,
                top_k=args.top_k,
                top_p=args.top_p,
                generator=generator,
                use_kv_cache=not args.no_kv_cache,
            )
            text = []
            with autocast:
                for token in new_tokens:
                    char = tokenizer.decode(token.tolist())
                    if stream:
                        print(char, end="", flush=True)
                    else:
                        text.append(char)
            print("".join(text))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
