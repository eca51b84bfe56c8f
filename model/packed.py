"""The one-token step of cached generation on a CPU: the model's own forward pass (the block stays
defined once), on the model itself or on a copy whose large Linear layers give each thread its own
share of the weights to stream, whichever steps faster on this CPU (docs/performance.md,
"Sampling", says why it depends). Tests hold the packed copy's logits to the model's."""

from __future__ import annotations

import math
import time
import weakref

import torch
from torch import nn

from model.gpt import GPT, sharing_copy
from model.kv_cache import KVCache

# A smaller weight stays whole: splitting so small a product costs more time than it saves
# (docs/performance.md, "Tried and not adopted").
MIN_PACKED_ELEMENTS = 2**17  # 512 KB in fp32


class PackedLinear(nn.Module):
    """An nn.Linear whose weight (out, in) is viewed as `pieces` slices along its outputs,
    (pieces, out / pieces, in), multiplied by the input's columns in one batched product."""

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


def pack_linears(
    model: GPT, pieces: int | None = None, min_packed: int = MIN_PACKED_ELEMENTS
) -> GPT:
    """A copy of model, in eval mode, sharing every parameter and buffer, in which each nn.Linear
    of at least min_packed weights is a PackedLinear with the largest number of pieces that
    divides both `pieces` (default: one per thread) and its outputs. `.packed` counts them."""
    pieces = torch.get_num_threads() if pieces is None else pieces
    packed_model = sharing_copy(model).eval()  # new modules, the same tensors
    packed_model.packed = 0
    for name, module in list(packed_model.named_modules()):
        n = math.gcd(pieces, module.out_features) if isinstance(module, nn.Linear) else 1
        if n > 1 and module.weight.numel() >= min_packed:
            packed_model.set_submodule(name, PackedLinear(module, n))
            packed_model.packed += 1
    return packed_model


def one_token_step(model: GPT, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """tokens (B,): each sequence's newest token, at position cache.length of its window. Returns
    the logits (B, vocab_size) for the token after it and appends its keys and values to cache.
    model: the model or its packed copy."""
    # oneDNN off in fp32: it sets up each call in about 15 us, more than these one-row products
    # take without it; under bf16 autocast it stays on, for the CPU's native bf16 kernels. Only
    # the enabled flag changes: the others (None) are left as they are.
    onednn = torch.is_autocast_enabled("cpu") and torch.backends.mkldnn.enabled
    with torch.backends.mkldnn.flags(
        onednn, deterministic=None, allow_tf32=None, fp32_precision=None
    ):
        logits, _ = model(tokens[:, None], kv_cache=cache)  # (B, 1, vocab_size)
    return logits[:, -1]


# model -> whether its packed copy stepped faster, measured once per model
PACKED_IS_FASTER: weakref.WeakKeyDictionary[GPT, bool] = weakref.WeakKeyDictionary()


@torch.inference_mode()
def fastest_step_model(model: GPT, rounds: int = 3, steps: int = 2) -> GPT:
    """The model, or its packed copy where that takes the one-token step faster on this CPU:
    timed once per model (tens of milliseconds), alternating, the best of `rounds` rounds of
    `steps` steps each. A packed copy streams faster where a one-row product runs on one core,
    and slower where it does not (measured both ways)."""
    if PACKED_IS_FASTER.get(model) is False:  # measured before: no copy to make
        return model
    packed = pack_linears(model)
    if packed.packed == 0:  # nothing large enough to pack
        return model
    if model not in PACKED_IS_FASTER:
        device = next(model.parameters()).device
        cache = KVCache(model.config.n_layer, model.config.block_size)
        token = torch.zeros(1, dtype=torch.long, device=device)
        best = {False: math.inf, True: math.inf}
        for r in range(rounds + 1):  # the first is a warm-up
            for is_packed, candidate in ((False, model), (True, packed)):
                cache.reset()
                start = time.perf_counter()
                for _ in range(min(steps, model.config.block_size)):
                    one_token_step(candidate, token, cache)
                if r > 0:
                    best[is_packed] = min(best[is_packed], time.perf_counter() - start)
        PACKED_IS_FASTER[model] = best[True] < best[False]
    return packed if PACKED_IS_FASTER[model] else model
