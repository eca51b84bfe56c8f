"""One new token through the model, with its past read from the KV cache: the cached path's step.

`GPT.forward` can also take one token and a cache, and the prompt still goes through it (once per
context window, see model/generate.py). For the token-by-token steps after it, `Decoder.step` does
the same computation leaner, for two reasons that both show on a CPU:

- One token's step is a chain of small operations, each costing a few microseconds of Python and
  dispatch whatever its size. The step below calls the functional ops directly, with no nn.Module
  calls or dropouts in between.
- One token's matrix products are matrix-vector products, limited by how fast the weights stream
  from memory. F.linear on one row reads its weight at about 15 GB/s here, while two cores can
  read 30 to 40 GB/s (it behaves as if single-threaded). `PackedLinear` cuts each weight into one
  piece per thread and runs the pieces as a batched product, so every core streams its own share.

For the 6-layer, 384-channel model on a 2-core CPU, one step takes 3.9 ms through GPT.forward, 3.5
ms in the lean step and 2.0 ms once the weights are packed (benchmarks/sample_speed.py prints all
three).

It mirrors the model's forward pass; the tests hold its logits to those of
`GPT.forward` to 1e-5 (fp32) for both position embeddings, both attention implementations, with
and without biases. It is for inference: there is no dropout, as in eval mode. The packed weights
are copies taken when the Decoder is built, so build a new one after the weights change.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from model.gpt import GPT, apply_rotary
from model.kv_cache import KVCache


class PackedLinear:
    """An nn.Linear's weight cut along its outputs into `pieces` slices, each stored transposed
    and contiguous, (pieces, in, out / pieces), for rows-times-matrix products split over threads.

    pieces=1 (or a number that does not divide out_features) keeps the plain F.linear."""

    def __init__(self, linear: nn.Linear, pieces: int) -> None:
        weight = linear.weight.detach()
        out_features, in_features = weight.shape
        self.bias = None if linear.bias is None else linear.bias.detach()
        self.weight = weight
        self.pieces = None
        if pieces > 1 and out_features % pieces == 0:
            sliced = weight.view(pieces, out_features // pieces, in_features)
            self.pieces = sliced.transpose(1, 2).contiguous()  # (pieces, in, out / pieces)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in) -> (B, out), equal to F.linear(x, weight, bias)."""
        if self.pieces is None:
            return F.linear(x, self.weight, self.bias)
        n = self.pieces.size(0)
        y = torch.bmm(x.expand(n, -1, -1), self.pieces)  # (pieces, B, out / pieces)
        y = y.transpose(0, 1).reshape(x.size(0), -1)  # (B, out): the pieces side by side
        return y if self.bias is None else y + self.bias


# A smaller weight stays whole: splitting so small a product costs more time than it saves.
# Chosen from step times of 128-, 192- and 384-channel models on 2 cores (README, Performance).
MIN_PACKED_ELEMENTS = 2**17  # 512 KB in fp32


def default_pieces(device: torch.device) -> int:
    """One piece per CPU thread; one (no packing) on GPUs, whose kernels already split the work."""
    return torch.get_num_threads() if device.type == "cpu" else 1


class Decoder:
    """Logits for the next token of each sequence, given its newest token and the cache of the
    rest (filled by `GPT.forward(..., kv_cache=cache)` over the window before it).

    pieces: how many slices each weight is cut into (default: one per CPU thread, 1 on GPUs); a
    weight whose output size that does not divide gets the largest number that divides both, and
    one of fewer than `min_packed` elements stays whole.
    """

    def __init__(
        self, model: GPT, pieces: int | None = None, min_packed: int = MIN_PACKED_ELEMENTS
    ) -> None:
        self.model = model
        if pieces is None:
            pieces = default_pieces(next(model.parameters()).device)

        def pack(linear: nn.Linear) -> PackedLinear:
            if linear.weight.numel() < min_packed:
                return PackedLinear(linear, 1)
            return PackedLinear(linear, math.gcd(pieces, linear.out_features))

        self.layers = [
            tuple(pack(lin) for lin in (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj))
            for b in model.transformer.h
        ]

    def step(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """tokens (B,): the newest token of each sequence, at position cache.length of the window.
        Returns logits (B, vocab_size) and appends the token's keys and values to the cache."""
        model, config = self.model, self.model.config
        B, C, nh = tokens.size(0), config.n_embd, config.n_head
        hs = C // nh
        pos = cache.length
        if pos >= config.block_size:
            raise ValueError(f"the cache is full: it holds all {config.block_size} positions")
        tr = model.transformer
        x = tr.wte.weight[tokens]  # (B, C)
        rotary = None
        if config.pos_embedding == "learned":
            x = x + tr.wpe.weight[pos]
        else:
            rotary = (model.rope_cos[pos : pos + 1], model.rope_sin[pos : pos + 1])  # (1, 1, hs/2)
        layers = zip(tr.h, self.layers, cache.layers, strict=True)
        for block, (c_attn, attn_proj, c_fc, mlp_proj), layer_cache in layers:
            # attention: x + c_proj(attend(q, cached k, cached v))
            h = F.layer_norm(x, (C,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
            qk, v = c_attn(h).split((2 * C, C), dim=1)  # (B, 2C), (B, C)
            qk = qk.view(B, 1, 2 * nh, hs)  # the heads of q, then those of k
            if rotary is not None:
                qk = apply_rotary(qk, *rotary)
            q, k = qk.transpose(1, 2).split(nh, dim=1)  # (B, nh, 1, hs) each
            k, v = layer_cache.append(k, v.view(B, nh, 1, hs))  # (B, nh, pos + 1, hs)
            y = block.attn.attend(q, k, v)  # (B, nh, 1, hs)
            x = x + attn_proj(y.reshape(B, C))  # heads side by side
            # MLP: x + c_proj(gelu(c_fc(x)))
            h = F.layer_norm(x, (C,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
            x = x + mlp_proj(F.gelu(c_fc(h)))
        x = F.layer_norm(x, (C,), tr.ln_f.weight, tr.ln_f.bias, tr.ln_f.eps)
        return F.linear(x, model.lm_head.weight)  # (B, vocab_size)
