"""What every head attends to: the attention weights of each layer, for any text.

The weights are the model's own, softmax(QKᵀ/√d_k) with the causal mask, computed from the queries
and keys each layer builds during a normal forward pass: a hook catches each attention layer's
input (and rotary tables) on the way through, and turns it into weights with the layer's own
`project`, the queries and keys of the forward pass.
"""

from __future__ import annotations

import torch

from model.gpt import GPT, causal_softmax


@torch.no_grad()
def attention_maps(model: GPT, idx: torch.Tensor) -> list[torch.Tensor]:
    """For idx (B, T): one (B, nh, T, T) tensor of attention weights per layer, in fp32."""
    maps: list[torch.Tensor] = []

    def catch(attn: torch.nn.Module, args: tuple) -> None:
        x, rotary = args[0], args[1] if len(args) > 1 else None
        q, k, _ = attn.project(x, rotary)
        maps.append(causal_softmax(q, k).float())

    hooks = [block.attn.register_forward_pre_hook(catch) for block in model.transformer.h]
    was_training = model.training
    try:
        model.eval()
        model(idx)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return maps
