"""Keys and values of past positions, per layer, kept only while generating (model/generate.py):
training never builds a cache and pays a `None` check per layer for it."""

from __future__ import annotations

import torch


class LayerKVCache:
    """One layer's keys and values, preallocated for `capacity` positions."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.length = 0
        self.k: torch.Tensor | None = None  # (B, nh, capacity, hs), allocated on first use
        self.v: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) after the cached positions; return all keys and values so far,
        (B, nh, length, hs)."""
        B, nh, T, hs = k.shape
        if self.k is None:
            # allocated here, so the cache takes the dtype autocast gave k and v; zeros: a step
            # that attends over the whole capacity, later positions masked (model/graphed.py),
            # multiplies their values by 0, and 0 times a NaN left in fresh memory is NaN
            self.k = k.new_zeros(B, nh, self.capacity, hs)
            self.v = v.new_zeros(B, nh, self.capacity, hs)
        end = self.length + T
        if end > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} positions, asked for {end}")
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class KVCache:
    """The caches of every layer of a model; `length` is how many positions they hold."""

    def __init__(self, n_layer: int, capacity: int) -> None:
        self.layers = [LayerKVCache(capacity) for _ in range(n_layer)]

    @property
    def length(self) -> int:
        return self.layers[0].length

    def advance(self, n: int) -> None:
        """Count n positions that a step wrote into the buffers itself (model/graphed.py)."""
        for layer in self.layers:
            if layer.length + n > layer.capacity:
                raise ValueError(f"KV cache holds {layer.capacity} positions")
            layer.length += n

    def reset(self) -> None:
        """Empty, keeping the buffers: a new window refills them in place, so a recorded CUDA
        graph that reads them stays valid."""
        for layer in self.layers:
            layer.length = 0
