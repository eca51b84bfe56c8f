"""The exact loss of a model on a whole text, where training reports a random-window estimate:
every character but the first (which has no context) scored once, in windows `stride` apart
(docs/internals.md, "Scoring every character exactly")."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.nn import functional as F

from model.gpt import GPT, evaluating


def check_stride(stride: int, block_size: int) -> None:
    """A stride over block_size / 2 would leave some characters less context than that."""
    if not 1 <= stride <= max(1, block_size // 2):
        raise ValueError(f"stride must be between 1 and block_size / 2 = {block_size // 2}")


def window_plan(n_tokens: int, block_size: int, stride: int) -> list[tuple[int, int]]:
    """(start, first scored position) of each window: the window holds tokens start ..
    start + T - 1 (T = block_size, or less for a short text) and its position j predicts token
    start + j + 1. Together the windows score tokens 1 .. n_tokens - 1, each exactly once."""
    if n_tokens < 2:
        raise ValueError(f"a text of {n_tokens} characters has nothing to predict")
    check_stride(stride, block_size)
    T = min(block_size, n_tokens - 1)
    last = n_tokens - 1 - T  # the last start whose window's targets stay inside the text
    starts = sorted({*range(0, last + 1, stride), last})
    scored_before = [0, *(start + T for start in starts[:-1])]  # tokens 1 .. this one are done
    return [(start, done - start) for start, done in zip(starts, scored_before, strict=True)]


@torch.no_grad()
def exact_loss(
    model: GPT,
    tokens: torch.Tensor,
    stride: int | None = None,
    batch_size: int = 32,
    progress: Callable[[Iterable], Iterable] = iter,
) -> tuple[float, int]:
    """Mean cross-entropy (nats) over every token of tokens (N,) but the first, and how many were
    scored. Windows go through the model batch_size at a time; progress wraps the batches (tqdm)."""
    block_size = model.config.block_size
    stride = block_size // 2 if stride is None else stride
    plan = window_plan(tokens.numel(), block_size, stride)
    T = min(block_size, tokens.numel() - 1)
    device = next(model.parameters()).device
    offsets = torch.arange(T + 1)
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    batches = [plan[i : i + batch_size] for i in range(0, len(plan), batch_size)]
    with evaluating(model):
        for batch in progress(batches):
            starts = torch.tensor([start for start, _ in batch])
            first = torch.tensor([first for _, first in batch], device=device)
            windows = tokens[starts[:, None] + offsets].long().to(device)  # (B, T + 1)
            logits, _ = model(windows[:, :-1])  # (B, T, vocab_size)
            losses = F.cross_entropy(
                logits.float().transpose(1, 2), windows[:, 1:], reduction="none"
            )
            scored = torch.arange(T, device=device)[None, :] >= first[:, None]  # (B, T)
            total += (losses * scored).sum(dtype=torch.float64)
            count += int(scored.sum())
    return total.item() / count, count


def bits_and_perplexity(nats: float) -> tuple[float, float]:
    """A mean loss in nats as bits per character and as perplexity."""
    return nats / math.log(2), math.exp(nats)
