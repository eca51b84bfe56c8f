"""The cached path's one-token step: the model's own forward pass, with its weights cut for
matrix-vector products.

After a context window's first pass has filled the KV cache, each new token is a forward pass over
one position. That pass is `GPT.forward` itself, so a block's computation is defined once. What
differs is how it runs on a CPU, where one token's products are matrix-vector products, bound by
how fast the weights stream from memory:
- `F.linear` on one row reads its weight as if on one core. `PackedLinear` cuts each weight along
  its outputs into one piece per thread and runs the pieces as one batched product, weight times
  column, so that every core streams its own share (docs/performance.md, "Sampling").
- oneDNN, which runs the exact GELU and helps attention on the CPU, costs about 15 us a call to set
  up, more than these one-row operations take in fp32 without it; the step turns it off while it
  runs, unless under bf16 autocast, where oneDNN holds the CPU's native bf16 kernels.

`Decoder` holds a copy of the model's structure that shares every parameter with it, but whose
large Linear layers are PackedLinears, and whose modules run their forward directly when called.
The pieces are views of the model's weights, not copies. Tests hold its logits to the model's to
1e-5 in fp32.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from model.gpt import GPT
from model.kv_cache import KVCache

# A smaller weight stays whole: splitting so small a product costs more time than it saves
# (docs/performance.md, "Tried, measured, not adopted").
MIN_PACKED_ELEMENTS = 2**17  # 512 KB in fp32


class PackedLinear(nn.Module):
    """An nn.Linear whose weight (out, in) is viewed as `pieces` slices along its outputs,
    (pieces, out / pieces, in), multiplied by the input's columns in one batched product: for
    products over few rows, split among threads. `pieces` must divide out_features."""

    def __init__(self, linear: nn.Linear, pieces: int) -> None:
        super().__init__()
        out_features, in_features = linear.weight.shape
        if out_features % pieces != 0:
            raise ValueError(f"{pieces} pieces do not divide {out_features} outputs")
        # a view: the same memory as the model's weight, so it always holds the current values
        self.pieces = linear.weight.detach().view(pieces, out_features // pieces, in_features)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> (..., out), equal to F.linear(x, weight, bias)."""
        columns = x.reshape(-1, x.size(-1)).t()  # (in, N)
        n = self.pieces.size(0)
        y = torch.bmm(self.pieces, columns.expand(n, -1, -1))  # (pieces, out / pieces, N)
        y = y.permute(2, 0, 1).reshape(*x.shape[:-1], -1)  # (..., out): the pieces side by side
        return y if self.bias is None else y + self.bias


def default_pieces(device: torch.device) -> int:
    """One piece per CPU thread; one (no packing) on GPUs, whose kernels already split the work."""
    return torch.get_num_threads() if device.type == "cpu" else 1


def _direct_call(cls: type[nn.Module]) -> type[nn.Module]:
    """cls, but calling an instance runs its forward at once. nn.Module.__call__ first looks for
    hooks, in two more Python frames per call, and one token's step makes about 60 module calls.
    The Decoder's copy has no hooks."""
    if cls not in _DIRECT:
        _DIRECT[cls] = type(cls.__name__, (cls,), {"__call__": cls.forward})
    return _DIRECT[cls]


_DIRECT: dict[type, type] = {}


class Decoder:
    """Logits for the next token of each sequence, given its newest token and the cache of the
    rest (filled by `GPT.forward(..., kv_cache=cache)` over the window before it).

    pieces: how many slices each weight is cut into (default: one per CPU thread, 1 on GPUs); a
    weight gets the largest number of pieces that divides both that and its output size, and one
    of fewer than `min_packed` elements stays whole.
    """

    def __init__(
        self, model: GPT, pieces: int | None = None, min_packed: int = MIN_PACKED_ELEMENTS
    ) -> None:
        if pieces is None:
            pieces = default_pieces(next(model.parameters()).device)
        shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
        self.model = copy.deepcopy(model, memo=shared).eval()  # new modules, the same tensors
        self.packed = 0
        for block in self.model.transformer.h:
            for owner, name in (
                (block.attn, "c_attn"),
                (block.attn, "c_proj"),
                (block.mlp, "c_fc"),
                (block.mlp, "c_proj"),
            ):
                linear = getattr(owner, name)
                n = math.gcd(pieces, linear.out_features)
                if n > 1 and linear.weight.numel() >= min_packed:
                    setattr(owner, name, PackedLinear(linear, n))
                    self.packed += 1
        for module in self.model.modules():
            module.__class__ = _direct_call(type(module))

    def step(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """tokens (B,): the newest token of each sequence, at position cache.length of the window.
        Returns logits (B, vocab_size) and appends the token's keys and values to the cache."""
        onednn = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = onednn and torch.is_autocast_enabled("cpu")
        try:
            logits, _ = self.model(tokens[:, None], kv_cache=cache)  # (B, 1, vocab_size)
        finally:
            torch.backends.mkldnn.enabled = onednn
        return logits[:, -1]
