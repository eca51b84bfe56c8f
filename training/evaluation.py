"""What the trainer measures at each evaluation: the loss on fixed windows of each split, and a
short sample of text."""

from __future__ import annotations

import torch
import torch.distributed as dist

from data import CharTokenizer, PreparedData, get_batch
from infra.device import Runtime
from model import GPT, generate
from training.config import TrainConfig
from training.rng import derived_seed


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
