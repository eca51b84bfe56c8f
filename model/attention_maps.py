"""What every head attends to, for any text: each layer's queries, keys and values as its own
`project` makes them in one normal forward pass, and the attention weights from them."""

from __future__ import annotations

import torch
from torch import Tensor

from model.gpt import GPT, causal_softmax, evaluating


@torch.no_grad()
def attention_inputs(model: GPT, idx: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
    """For idx (B, T): one (q, k, v) per layer, (B, nh, T, hs) each (rotary positions turned into
    q and k where the model uses RoPE), from each layer's input caught by a hook in eval mode."""
    inputs: list[tuple[Tensor, Tensor, Tensor]] = []

    def catch(attn: torch.nn.Module, args: tuple) -> None:
        x, rotary = args[0], args[1] if len(args) > 1 else None
        inputs.append(attn.project(x, rotary))

    hooks = [block.attn.register_forward_pre_hook(catch) for block in model.transformer.h]
    try:
        with evaluating(model):
            model(idx)
    finally:
        for hook in hooks:
            hook.remove()
    return inputs


@torch.no_grad()
def attention_maps(model: GPT, idx: Tensor) -> list[Tensor]:
    """For idx (B, T): one (B, nh, T, T) tensor of attention weights per layer, in fp32."""
    return [causal_softmax(q, k).float() for q, k, _ in attention_inputs(model, idx)]
