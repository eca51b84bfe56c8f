"""Random training windows: a pure function of (data, generator)."""

from __future__ import annotations

import torch


def get_batch(
    data: torch.Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """batch_size windows of block_size tokens from data (N,) at random offsets, and the same
    windows shifted by one token as targets: x, y of shape (B, T), y[:, t] == x[:, t + 1]."""
    n_starts = data.numel() - block_size  # a window needs block_size + 1 tokens
    if n_starts < 1:
        raise ValueError(f"{data.numel()} tokens are too few for windows of {block_size} + 1")
    starts = torch.randint(n_starts, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(block_size + 1)  # (T + 1,)
    windows = data[starts[:, None] + offsets].long()  # (B, T + 1): ids stored as uint16
    on_gpu = torch.device(device).type == "cuda"
    if on_gpu:  # page-locked memory lets the copy run asynchronously, overlapping the GPU's work
        windows = windows.pin_memory()
    windows = windows.to(device, non_blocking=on_gpu)
    return windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)
