"""A run's own random streams, seeded from its seed and saved in its checkpoints. Batches come
from a generator of the run's. Dropout and the initial weights draw from torch's global
generators, which no call takes as an argument, so the run swaps its own state into them for its
own work (`global_generators`): runs sharing a process (a notebook) draw what they would alone."""

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


def global_state(device: torch.device, seed: int | None = None) -> RngState:
    """The global generators' state (the CPU's and the device's), or, given a seed, the state
    torch.manual_seed(seed) would give them, made without touching them."""
    cuda, mps = device.type == "cuda", device.type == "mps"
    if seed is None:
        return {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if cuda else None,
                "mps": torch.mps.get_rng_state() if mps else None}  # fmt: skip

    def seeded(where: str | torch.device) -> torch.Tensor:
        return torch.Generator(where).manual_seed(seed).get_state()

    return {"torch": seeded("cpu"), "cuda": seeded(device) if cuda else None,
            "mps": seeded(device) if mps else None}  # fmt: skip


def set_global_state(state: RngState, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    if state.get("mps") is not None and device.type == "mps":
        torch.mps.set_rng_state(state["mps"])


@contextlib.contextmanager
def global_generators(state: RngState, device: torch.device) -> Iterator[None]:
    """Within the block torch's global generators hold `state`; after it, `state` holds where
    the block left them, and they hold the caller's state again."""
    caller = global_state(device)
    set_global_state(state, device)
    try:
        yield
    finally:
        state.update(global_state(device))
        set_global_state(caller, device)


class RandomStreams:
    """One rank's streams: its batches' generator, and the global generators' state for dropout."""

    def __init__(self, seed: int, rank: int, device: torch.device) -> None:
        self.device = device
        self.batches = torch.Generator().manual_seed(derived_seed(seed, "train", rank))
        self.dropout_state = global_state(device, derived_seed(seed, "dropout", rank))

    def dropout(self) -> contextlib.AbstractContextManager:
        return global_generators(self.dropout_state, self.device)

    def state_dict(self) -> RngState:
        return {**self.dropout_state, "batches": self.batches.get_state()}

    def load_state_dict(self, state: RngState) -> None:
        self.dropout_state = {key: state.get(key) for key in ("torch", "cuda", "mps")}
        self.batches.set_state(state["batches"])
