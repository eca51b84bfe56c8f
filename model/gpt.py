"""A decoder-only transformer (GPT-2 architecture) for character-level language modelling.

Pure nn.Modules: no file I/O, no printing, no optimizer, no device policy. Parameter names follow
GPT-2 (`transformer.wte`, `transformer.h.0.attn.c_attn`, ...) so the state dict reads like every
GPT-2 in the ecosystem.

References:
- Radford et al. 2019, "Language Models are Unsupervised Multitask Learners" (GPT-2): pre-LayerNorm
  blocks, a final LayerNorm, residual projections initialised with std 0.02/sqrt(2 * n_layer).
- Vaswani et al. 2017, "Attention Is All You Need": scaled dot-product attention.
- Press & Wolf 2017, "Using the Output Embedding to Improve Language Models": tied input/output
  embeddings.
- Su et al. 2021, "RoFormer": rotary position embeddings (optional, `pos_embedding="rope"`).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
from torch.nn import functional as F

from model.config import GPTConfig

if TYPE_CHECKING:
    from model.kv_cache import KVCache, LayerKVCache


def causal_softmax(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The attention weights softmax(QKᵀ/√d_k) with a causal mask, (B, nh, Tq, Tk): row i says how
    much query i takes from each key. q: (B, nh, Tq, hs); k: (B, nh, Tk, hs), Tq <= Tk: the queries
    are the last Tq of the Tk positions (earlier keys may come from a KV cache), so query i sees
    keys 0 .. i + (Tk - Tq), and the later ones get exactly 0."""
    Tq, Tk = q.size(-2), k.size(-2)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # (B, nh, Tq, Tk)
    allowed = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril(diagonal=Tk - Tq)
    att = att.masked_fill(~allowed, float("-inf"))
    return F.softmax(att, dim=-1)


def causal_attention_math(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0
) -> torch.Tensor:
    """softmax(QKᵀ/√d_k)V with a causal mask, written out. Shapes as in `causal_softmax`;
    returns (B, nh, Tq, hs)."""
    att = F.dropout(causal_softmax(q, k), p=dropout_p)  # (B, nh, Tq, Tk)
    return att @ v  # (B, nh, Tq, hs)


def causal_attention_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0
) -> torch.Tensor:
    """The same as `causal_attention_math`, through torch's fused kernels."""
    Tq, Tk = q.size(-2), k.size(-2)
    # causal for training or a prompt's first pass (Tq == Tk); one new position sees every key
    if Tq in (Tk, 1):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=Tq == Tk)
    # is_causal aligns its mask top-left; cached keys need causal_softmax's, aligned bottom-right
    return causal_attention_math(q, k, v, dropout_p)


def attention_kernel(
    attn_impl: str, device: torch.device, queries: int, dtype: torch.dtype = torch.float32
) -> str:
    """The kernel attn_impl runs for `queries` queries at once, in dtype, on device. auto, as
    measured (docs/performance.md, "Which attention kernel"): on the CPU in bf16 or fp16, the
    formula written out for many queries (training, a prompt); everywhere else SDPA."""
    if attn_impl != "auto":
        return attn_impl
    cpu_low_precision = device.type == "cpu" and dtype != torch.float32
    return "math" if cpu_low_precision and queries > 1 else "sdpa"


ATTENTION = {"math": causal_attention_math, "sdpa": causal_attention_sdpa}


def rotary_tables(
    head_size: int, n_positions: int, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, (n_positions, 1, head_size / 2): position p turns the
    pair of channels (i, i + hs/2) by p * base^(-2i / hs) radians (RoFormer, section 3.4.2)."""
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
    angles = torch.arange(n_positions, dtype=torch.float32)[:, None] * inv_freq  # (T, hs/2)
    return angles.cos()[:, None, :], angles.sin()[:, None, :]  # (T, 1, hs/2): broadcast over heads


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[..., i], x[..., i + hs/2]) by its position's angle.
    x: (B, T, heads, hs); cos, sin: (T, 1, hs/2)."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, T, heads, hs/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.attn_impl = config.attn_impl
        # queries, keys and values for all heads in one matrix product
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def project(
        self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The queries, keys and values of every head, (B, nh, T, hs) each, with rotary positions
        (when given) turned into the queries and keys."""
        B, T, C = x.size()
        nh, hs = self.n_head, C // self.n_head
        qk, v = self.c_attn(x).split((2 * C, C), dim=2)  # (B, T, 2C), (B, T, C)
        qk = qk.view(B, T, 2 * nh, hs)  # the heads of q, then those of k
        if rotary is not None:
            qk = apply_rotary(qk, *rotary)  # queries and keys turned in one pass
        q, k = qk.transpose(1, 2).split(nh, dim=1)  # (B, nh, T, hs) each
        v = v.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        kv_cache: LayerKVCache | None = None,
    ) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.project(x, rotary)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)  # (B, nh, T_past + T, hs)
        dropout_p = self.dropout if self.training else 0.0
        attend = ATTENTION[attention_kernel(self.attn_impl, q.device, q.size(-2), q.dtype)]
        y = attend(q, k, v, dropout_p)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side
        return F.dropout(self.c_proj(y), self.dropout, self.training)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.c_proj(F.gelu(self.c_fc(x))), self.dropout, self.training)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        kv_cache: LayerKVCache | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rotary, kv_cache)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        layers = dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        )
        if config.pos_embedding == "learned":
            layers["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        else:  # rope: tables derived from the config, so kept out of the state dict
            cos, sin = rotary_tables(config.n_embd // config.n_head, config.block_size)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.transformer = nn.ModuleDict(layers)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying (Press & Wolf 2017): the head reads logits off the token embedding.
        self.lm_head.weight = self.transformer.wte.weight
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """GPT-2's initialisation: every linear and embedding weight ~ N(0, 0.02), biases zero,
        LayerNorms the identity. The two projections that write into the residual stream in each
        block (`attn.c_proj`, `mlp.c_proj`) get std 0.02 / sqrt(2 * n_layer): the stream adds
        2 * n_layer such terms, and this keeps its variance independent of depth (GPT-2 paper,
        section 2.3)."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                std = residual_std if name.endswith("c_proj") else 0.02
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()  # weight 1, bias 0: the identity

    def num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters (the tied embedding once). non_embedding leaves out the position
        table, which does no matrix work; the token table, as the tied lm_head, does."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        return n

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx: (B, T) token ids. Returns logits (B, T, vocab_size) and, with targets, the mean
        cross-entropy. With a kv_cache, idx continues the sequence the cache already holds."""
        B, T = idx.size()
        past = kv_cache.length if kv_cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(
                f"sequence of length {past + T} is longer than block_size {self.config.block_size}"
            )
        x = self.transformer.wte(idx)  # (B, T, C)
        rotary = None
        if self.config.pos_embedding == "learned":
            x = x + self.transformer.wpe.weight[past : past + T]  # (B, T, C) + (T, C): positions
        else:
            rotary = (self.rope_cos[past : past + T], self.rope_sin[past : past + T])
        x = F.dropout(x, self.config.dropout, self.training)
        for i, block in enumerate(self.transformer.h):
            x = block(x, rotary, kv_cache.layers[i] if kv_cache is not None else None)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T))
        return logits, loss


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """The block runs model in eval mode (dropout off); after it, model is in the mode it was."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def sharing_copy(model: nn.Module) -> nn.Module:
    """A copy of model's modules that shares every parameter and buffer with it: changing the
    copy's modules (their attention kernel, a layer swapped) leaves model as it was."""
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo=shared)
