"""The one-token step of cached generation on a GPU, replayed as one CUDA graph (docs/internals.md):
such a step of a model this small is about a hundred kernel launches, each a few microseconds of
the CPU's time for as little of the GPU's work, which a graph replays with one launch, at the same
shapes and addresses; so the position is a tensor (an int would be baked into the recording)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from model.gpt import GPT
from model.kv_cache import KVCache


def static_one_token_step(
    model: GPT, token: torch.Tensor, position: torch.Tensor, cache: KVCache
) -> torch.Tensor:
    """token (B, 1) at `position` (a (1,) tensor) of the window whose earlier keys and values
    cache holds (allocated for its whole capacity). Writes the token's keys and values at
    `position` and returns the logits (B, vocab_size) for the token after it. cache.length is
    the caller's to advance."""
    cfg = model.config
    B, C = token.size(0), cfg.n_embd
    x = model.transformer.wte(token)  # (B, 1, C)
    rotary = None
    if cfg.pos_embedding == "learned":
        x = x + model.transformer.wpe(position)  # (B, 1, C) + (1, C)
    else:
        rotary = (model.rope_cos[position], model.rope_sin[position])  # (1, 1, hs/2) each
    capacity = cache.layers[0].k.size(2)
    visible = (torch.arange(capacity, device=token.device) <= position)[None]  # (1, capacity)
    for block, layer in zip(model.transformer.h, cache.layers, strict=True):
        q, k, v = block.attn.project(block.ln_1(x), rotary)  # (B, nh, 1, hs) each
        layer.k.index_copy_(2, position, k.to(layer.k.dtype))
        layer.v.index_copy_(2, position, v.to(layer.v.dtype))
        y = F.scaled_dot_product_attention(q, layer.k, layer.v, attn_mask=visible)
        x = x + block.attn.c_proj(y.transpose(1, 2).reshape(B, 1, C))  # (B, 1, C)
        x = x + block.mlp(block.ln_2(x))
    return model.lm_head(model.transformer.ln_f(x))[:, -1]  # (B, vocab_size)


class GraphedStep:
    """The step for Stepper, tokens (B,) at position cache.length -> logits (B, vocab_size),
    advancing the cache: static_one_token_step recorded as a CUDA graph at its first call with a
    cache, and replayed after that. The graph reads and writes that cache's buffers, which
    KVCache.reset keeps; another cache is recorded afresh."""

    def __init__(self, model: GPT) -> None:
        self.model = model
        self.cache: KVCache | None = None  # the cache the graph was recorded with

    def _record(self, tokens: torch.Tensor, cache: KVCache) -> None:
        self.cache = cache
        self.token = tokens[:, None].clone()  # (B, 1): the graph's input, refilled each step
        self.position = torch.full((1,), cache.length, device=tokens.device)
        # the precision of the caller's autocast, without autocast's cache of cast weights,
        # which a graph must not hold
        autocast, dtype = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")

        def step() -> torch.Tensor:
            with torch.autocast("cuda", dtype=dtype, enabled=autocast, cache_enabled=False):
                return static_one_token_step(self.model, self.token, self.position, cache)

        side = torch.cuda.Stream()  # warm up off the default stream, as recording requires
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            step()  # writes this token's keys and values, as the replay will again
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA calls of other threads (NCCL's watchdog under torchrun) go on
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.logits = step()

    def __call__(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        if cache is not self.cache:
            self._record(tokens, cache)
        self.token.copy_(tokens[:, None])
        self.position.fill_(cache.length)
        self.graph.replay()
        cache.advance(1)
        return self.logits.clone()  # the graph's output is overwritten at the next replay
