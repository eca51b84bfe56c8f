"""What the trainer measures at each evaluation: the loss on fixed windows of each split, a short
sample of text, and the probe text whose attention TensorBoard shows (the views themselves are
drawn by viz/inspection.py)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from data import CharTokenizer, PreparedData, get_batch
from infra.device import Runtime
from infra.errors import ConfigError
from model import GPT, generate
from training.config import TrainConfig
from training.rng import derived_seed

PROBE_CHARS = 40  # the default probe's length: a label per character must stay readable


@torch.no_grad()
def estimate_loss(
    model: GPT, eval_model: torch.nn.Module, data: PreparedData, config: TrainConfig, rt: Runtime
) -> dict[str, float]:
    """Mean loss over eval_iters batches of each split, dropout off, averaged over ranks.
    eval_model is model itself or its compiled form. The windows are the same at every
    evaluation (a fixed seed), so the curve shows the model changing, not the sample."""
    model.eval()
    losses = {}
    for split, tokens in (("train", data.train), ("val", data.val)):
        generator = torch.Generator().manual_seed(derived_seed(config.seed, "eval", split, rt.rank))
        total = torch.zeros((), device=rt.device)
        for _ in range(config.eval_iters):
            x, y = get_batch(tokens, config.batch_size, config.block_size, generator, rt.device)
            with rt.autocast():
                _, loss = eval_model(x, y)
            total += loss.float()
        if rt.distributed:
            dist.all_reduce(total)
        losses[split] = total.item() / (config.eval_iters * rt.world_size)
    model.train()
    return losses


def sample_text(model: GPT, tokenizer: CharTokenizer, n_chars: int, seed: int, rt: Runtime) -> str:
    """A short sample from the current model, from a newline, with a fixed seed."""
    start = tokenizer.encode("\n") if "\n" in tokenizer.stoi else [0]
    idx = torch.tensor([start], dtype=torch.long, device=rt.device)
    generator = torch.Generator(device=rt.device).manual_seed(derived_seed(seed, "sample"))
    model.eval()
    with rt.autocast():
        out = generate(model, idx, n_chars, generator=generator)
    model.train()
    return tokenizer.decode(out[0, len(start) :].tolist())


def probe_tokens(config: TrainConfig, data: PreparedData) -> list[int]:
    """The probe text's tokens: config.probe_text, or by default the start of the first line of
    the validation split that has at least 24 characters (its length is checked by the config).
    Characters the data does not have are a ConfigError that names them."""
    tokenizer, text = data.tokenizer, config.probe_text
    if not text:
        lines = tokenizer.decode(data.val[:5000].tolist()).split("\n")
        text = next((line for line in lines if len(line) >= 24), lines[0] or "\n")
        text = text[: min(PROBE_CHARS, config.block_size)]
    unknown = tokenizer.unknown_characters(text)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown)
        raise ConfigError(f"probe_text: {shown} not in the vocabulary of the data")
    return tokenizer.encode(text)
