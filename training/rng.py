"""Every random stream of a run: seeded from the run's seed, saved in checkpoints, restored."""

from __future__ import annotations

import hashlib

import torch


def derived_seed(seed: int, *stream: object) -> int:
    """The seed of one independent random stream (e.g. "train" batches of rank 1) of a run."""
    digest = hashlib.sha256(repr((seed, *stream)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def rng_state(device: torch.device, batches: torch.Generator) -> dict[str, torch.Tensor | None]:
    """The global streams (dropout) on the CPU and the device, and the batch generator's."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "mps": torch.mps.get_rng_state() if device.type == "mps" else None,
        "batches": batches.get_state(),
    }


def set_rng_state(
    state: dict[str, torch.Tensor | None], device: torch.device, batches: torch.Generator
) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    if state.get("mps") is not None and device.type == "mps":
        torch.mps.set_rng_state(state["mps"])
    batches.set_state(state["batches"])
