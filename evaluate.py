"""Score every character of a text with a checkpoint: `python evaluate.py --ckpt out/small`.

What it prints, and how its windows go: docs/internals.md, "Scoring every character exactly"."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import torch

from checkpoint import load_checkpoint, restore_model
from data import DATASETS, load_dataset
from infra.cli import option, parse_into, read_text_file, require
from infra.device import inference_autocast, resolve_device
from infra.errors import ConfigError, DataError, UserError, run_main
from infra.progress import progress
from model.scoring import bits_and_perplexity, check_stride, exact_loss


@dataclass(frozen=True)
class EvaluateOptions:
    ckpt: str = option(help="a checkpoint file, or a run directory (its best.pt, else last.pt)")
    split: str = option("val", "the split of the checkpoint's dataset to score",
                        choices=("train", "val"))  # fmt: skip
    text_file: str | None = option(None, "score this UTF-8 file instead of a split")
    data_path: str = option("", "the text the run trained on, for its splits (default: Tiny "
                            "Shakespeare's cache)")  # fmt: skip
    data_dir: str = option("", "where its prepared token arrays are (default: under data/)")
    stride: int | None = option(None, "characters between windows (default: block_size / 2)")
    batch_size: int = option(32, "windows per forward pass")
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, self, "batch_size", "must be at least 1")


def text_tokens(options: EvaluateOptions, checkpoint: dict, tokenizer) -> tuple[torch.Tensor, str]:
    """The tokens to score and a name for them."""
    if options.text_file is not None:
        text = read_text_file("--text_file", options.text_file)
        return torch.tensor(tokenizer.encode_array(text), dtype=torch.long), options.text_file
    # The dataset's kind comes from the checkpoint (a choice, checked); where it lies never does:
    # a checkpoint is data from anywhere, and a path in it would have the script read that file
    # and write a prepared copy of it.
    dataset = checkpoint["config"].get("dataset")
    if dataset == "text" and not options.data_path:
        named = checkpoint["config"].get("data_path")
        named = f" (its config names {named!r})" if isinstance(named, str) and named else ""
        raise ConfigError(f"this model trained on a text of its own{named}: give that text "
                          "as --data_path to score its split, or score any file with "
                          "--text_file")  # fmt: skip
    dataset = dataset if dataset in DATASETS else "shakespeare_char"
    data = load_dataset(dataset, options.data_path, options.data_dir)
    if data.tokenizer.chars != tokenizer.chars:
        raise DataError("the checkpoint's vocabulary differs from its dataset's: "
                        "it cannot score it")  # fmt: skip
    return (data.train if options.split == "train" else data.val), f"the {options.split} split"


def evaluate(argv: list[str] | None = None) -> None:
    options = parse_into(EvaluateOptions, argv, __doc__.split("\n")[0])
    device = resolve_device(options.device)
    checkpoint = load_checkpoint(options.ckpt, map_location=device)
    model, tokenizer = restore_model(checkpoint, device)
    tokens, name = text_tokens(options, checkpoint, tokenizer)
    block_size = model.config.block_size
    stride = options.stride if options.stride is not None else block_size // 2
    try:
        check_stride(stride, block_size)
    except ValueError as e:
        raise ConfigError(f"--{e}") from None
    if tokens.numel() < 2:
        raise ConfigError(f"{name} has {tokens.numel()} characters; it needs at least 2")

    def scoring(batches):
        return progress(batches, len(batches), f"scoring {name}", unit="batch")

    with inference_autocast(device):
        nats, count = exact_loss(model, tokens, stride, options.batch_size, scoring)
    if not math.isfinite(nats):
        raise UserError(f"the model's loss on {name} is {nats}: its logits are NaN or infinite")
    bits, perplexity = bits_and_perplexity(nats)
    short = min(block_size, tokens.numel() - 1) // 2 - 1
    print(
        f"{name}: {count:,} characters scored, each with up to {block_size} characters of context"
    )
    print(f"  (all but the first {max(short, 0)} with at least {block_size // 2}; stride {stride})")
    print(f"  loss        {nats:.4f} nats per character")
    print(f"  bits        {bits:.4f} per character")
    print(f"  perplexity  {perplexity:.3f}")
    estimate = checkpoint["eval_losses"]
    if estimate and options.text_file is None:
        print(f"  the trainer's estimate at iteration {estimate['iter']}: {options.split} loss "
              f"{estimate[options.split]:.4f} (random windows)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_main(evaluate, argv, prog="evaluate.py")


if __name__ == "__main__":
    sys.exit(main())
