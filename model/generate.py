"""Autoregressive generation, with or without a KV cache, over a context window that moves in
jumps (`window_start`) so that a cache can follow it, and the plain path is the exact reference
for the cached one (docs/internals.md, "The KV cache and the context window")."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.nn import functional as F

from model.gpt import GPT
from model.graphed import GraphedStep
from model.kv_cache import KVCache
from model.packed import fastest_step_model, one_token_step


def window_start(length: int, previous_start: int | None, block_size: int) -> int:
    """Where the context window of a sequence of `length` tokens begins, given where it began for
    the previous token (None for the prompt). A prompt keeps its last block_size tokens; after
    that the window stays put while it fits, and when it overflows jumps to keep the newest
    block_size // 2 (their positions restart at 0, and the cache is refilled in one pass)."""
    if previous_start is None:
        return max(0, length - block_size)
    if length - previous_start <= block_size:
        return previous_start
    return length - max(1, block_size // 2)


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row of logits (B, V); returns (B, 1). temperature 0 is greedy (argmax);
    top_k keeps the k most likely tokens; top_p keeps the smallest set of most likely tokens whose
    probability mass reaches p (Holtzman et al. 2019, nucleus sampling)."""
    if temperature == 0.0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        kth_largest = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = F.softmax(sorted_logits, dim=-1)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the more likely tokens
        drop_sorted = mass_before >= top_p  # the set already reached p without this token
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1, generator=generator)


def one_token_step_for(model: GPT) -> Callable[[torch.Tensor, KVCache], torch.Tensor]:
    """The fastest one-token step where the model lives, each tested against the plain path."""
    device = next(model.parameters()).device
    if device.type == "cpu":
        fastest = fastest_step_model(model)
        return lambda tokens, cache: one_token_step(fastest, tokens, cache)
    if device.type == "cuda":
        return GraphedStep(model)
    return lambda tokens, cache: model(tokens[:, None], kv_cache=cache)[0][:, -1]


class Stepper:
    """The logits for the next token of a growing sequence: it keeps the context window's start
    and, when caching, the window's keys and values and its one-token step (one_token_step_for)."""

    def __init__(self, model: GPT, use_kv_cache: bool) -> None:
        self.model = model
        self.one_token = one_token_step_for(model) if use_kv_cache else None
        self.start: int | None = None
        self.cache = KVCache(model.config.n_layer, model.config.block_size)

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) for the token after idx (B, T)."""
        new_start = window_start(idx.size(1), self.start, self.model.config.block_size)
        if new_start != self.start:
            self.start = new_start
            self.cache.reset()  # a new window: every position changed
        if self.one_token is None:  # no cache
            logits, _ = self.model(idx[:, self.start :])
        elif self.cache.length == 0:  # fill the cache with the whole window
            logits, _ = self.model(idx[:, self.start :], kv_cache=self.cache)
        else:  # only the newest token is not cached yet
            return self.one_token(idx[:, -1], self.cache)
        return logits[:, -1, :]


@torch.inference_mode()  # no autograd bookkeeping: a cached step is mostly overhead
def generate_tokens(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_kv_cache: bool = True,
) -> Iterator[torch.Tensor]:
    """Continue idx (B, T) by max_new_tokens tokens, yielding each new column (B,) when drawn."""
    stepper = Stepper(model, use_kv_cache)
    for _ in range(max_new_tokens):
        next_id = sample_next_token(stepper.logits(idx), temperature, top_k, top_p, generator)
        idx = torch.cat((idx, next_id), dim=1)
        yield next_id[:, 0]


@torch.inference_mode()
def generate(model: GPT, idx: torch.Tensor, max_new_tokens: int, **sampling) -> torch.Tensor:
    """idx (B, T) followed by max_new_tokens generated tokens: (B, T + max_new_tokens).
    sampling: generate_tokens' options (temperature, top_k, top_p, generator, use_kv_cache)."""
    new = [token[:, None] for token in generate_tokens(model, idx, max_new_tokens, **sampling)]
    return torch.cat((idx, *new), dim=1)
