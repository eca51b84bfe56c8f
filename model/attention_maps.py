"""What every head attends to: the attention weights of each layer, for any text.

The weights are the model's own, softmax(QKᵀ/√d_k) with the causal mask, computed from the queries
and keys each layer builds during a normal forward pass: a hook catches each attention layer's
input (and rotary tables) on the way through, and `CausalSelfAttention.attention_weights` turns it
into weights with the same projection the forward pass uses.
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
        maps.append(attn.attention_weights(x, rotary).float())

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


@torch.no_grad()
def attention_over_text(model: GPT, ids: list[int], top: int = 5) -> dict:
    """Everything the attention explorer shows for a text of any length, from the model's own
    computation: the same context windows as generation (model.generate.window_start), one
    forward pass per window, and in each layer the queries, keys and values of
    `CausalSelfAttention.project`, from which `causal_softmax` makes the weights.

    For each position t (a query), `start[t]` is the first position of its window. In layer l,
    head h, its row holds, for keys s = start[t] .. t: `scores` q_t·k_s (before the 1/√d_k) and
    `weights` softmax(QKᵀ/√d_k) with the causal mask. `windows` holds each window's first and
    last position and the queries q_t, keys k_s and values v_s (hs channels) of its positions,
    per layer and head: the weights of its queries average the values. `top_ids` and
    `top_probs` are the likeliest next characters after t."""
    from model.generate import window_start

    T, block = len(ids), model.config.block_size
    starts, start = [], None
    for length in range(1, T + 1):
        start = window_start(length, start, block)
        starts.append(start)
    n_layer, n_head = model.config.n_layer, model.config.n_head
    scores = [[[None] * T for _ in range(n_head)] for _ in range(n_layer)]
    weights = [[[None] * T for _ in range(n_head)] for _ in range(n_layer)]
    windows = []
    top_ids, top_probs = [None] * T, [None] * T
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for window in sorted(set(starts)):
            members = [t for t in range(T) if starts[t] == window]
            end = members[-1] + 1
            idx = torch.tensor([ids[window:end]], device=device)
            caught = []

            def catch(attn: torch.nn.Module, args: tuple, caught=caught) -> None:
                x, rotary = args[0], args[1] if len(args) > 1 else None
                q, k, v = attn.project(x, rotary)
                caught.append((q @ k.transpose(-2, -1), causal_softmax(q, k), q, k, v))

            hooks = [b.attn.register_forward_pre_hook(catch) for b in model.transformer.h]
            try:
                logits, _ = model(idx)
            finally:
                for hook in hooks:
                    hook.remove()
            probs = torch.softmax(logits[0].float(), dim=-1)  # (T_window, vocab)
            best = probs.topk(min(top, probs.size(-1)), dim=-1)
            window_vectors = {"start": window, "end": end}
            for i, name in enumerate(("queries", "keys", "values"), start=2):
                window_vectors[name] = [  # (layer, head, position, hs)
                    [found[i][0, h].float().tolist() for h in range(n_head)] for found in caught
                ]
            windows.append(window_vectors)
            for t in members:
                row = t - window  # the query's place in this window
                top_ids[t] = best.indices[row].tolist()
                top_probs[t] = best.values[row].tolist()
                for layer, (s, w, *_) in enumerate(caught):
                    for head in range(n_head):
                        scores[layer][head][t] = s[0, head, row, : row + 1].float().tolist()
                        weights[layer][head][t] = w[0, head, row, : row + 1].float().tolist()
    finally:
        model.train(was_training)
    return {
        "ids": list(ids),
        "start": starts,
        "head_size": model.config.n_embd // n_head,
        "scores": scores,
        "weights": weights,
        "windows": windows,
        "top_ids": top_ids,
        "top_probs": top_probs,
    }
