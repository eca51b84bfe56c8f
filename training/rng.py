"""A run's random streams, its own: seeded from the run's seed, saved in checkpoints, restored.

Batches come from a generator of the run's. Dropout (and the initial weights) draw from torch's
global generators, which no call takes as an argument, so a run swaps its own state into them for
its own work and puts the caller's back after (`global_generators`): two runs in one process (a
notebook) draw exactly what two processes would, in either order, and the caller's global state
is as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch

RngState = dict[str, torch.Tensor | None]


def derived_seed(seed: int, *stream: object) -> int:
    """The seed of one independent random stream (e.g. "train" batches of rank 1) of a run."""
    digest = hashlib.sha256(repr((seed, *stream)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seeded_state(seed: int, device: torch.device) -> RngState:
    """The global generators' state after torch.manual_seed(seed), made without touching them."""
    return {
        "torch": torch.Generator().manual_seed(seed).get_state(),
        "cuda": torch.Generator(device).manual_seed(seed).get_state()
        if device.type == "cuda"
        else None,
        "mps": torch.Generator(device).manual_seed(seed).get_state()
        if device.type == "mps"
        else None,
    }


def global_state(device: torch.device) -> RngState:
    """The global generators' state: the CPU's, and the device's."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "mps": torch.mps.get_rng_state() if device.type == "mps" else None,
    }


def set_global_state(state: RngState, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    if state.get("mps") is not None and device.type == "mps":
        torch.mps.set_rng_state(state["mps"])


@contextlib.contextmanager
def global_generators(state: RngState, device: torch.device) -> Iterator[None]:
    """Within the block torch's global generators hold `state`; after it, `state` is updated to
    where the block left them, and they hold the caller's state again."""
    caller = global_state(device)
    set_global_state(state, device)
    try:
        yield
    finally:
        state.update(global_state(device))
        set_global_state(caller, device)


class RandomStreams:
    """One process's streams of a run: its batches' generator, and the global generators' state
    for dropout, used through `dropout()`. Ranks differ (each draws its own batches and masks)."""

    def __init__(self, seed: int, rank: int, device: torch.device) -> None:
        self.device = device
        self.batches = torch.Generator().manual_seed(derived_seed(seed, "train", rank))
        self.dropout_state = seeded_state(derived_seed(seed, "dropout", rank), device)

    def dropout(self) -> contextlib.AbstractContextManager:
        """The block draws dropout masks from this run's stream."""
        return global_generators(self.dropout_state, self.device)

    def state_dict(self) -> RngState:
        return {**self.dropout_state, "batches": self.batches.get_state()}

    def load_state_dict(self, state: RngState) -> None:
        self.dropout_state = {key: state.get(key) for key in ("torch", "cuda", "mps")}
        self.batches.set_state(state["batches"])
