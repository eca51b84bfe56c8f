"""What TensorBoard shows of the model at an evaluation, in two halves that cost the training loop
next to nothing (docs/performance.md, "What an evaluation costs"): the numbers, computed on the
training device, and their drawing and writing, on a background thread (infra/background.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from model import GPT
from model.attention_maps import attention_maps
from viz.figures import AttentionPictures, visible


@dataclass(frozen=True)
class Histogram:
    """A histogram as TensorBoard stores it: the values' count, extremes, sum and sum of
    squares, and buckets, each given by its right edge (the first starts at `min`)."""

    min: float
    max: float
    num: int
    sum: float
    sum_squares: float
    bucket_limits: list[float]
    bucket_counts: list[float]


@dataclass(frozen=True)
class Inside:
    """What TensorBoard shows of the model at one evaluation, on the CPU."""

    step: int
    attention: list[torch.Tensor]  # each layer's maps over the probe, (n_head, T, T)
    histograms: dict[str, Histogram]  # every parameter's values and gradients
    embedding: torch.Tensor  # the token embedding (vocab_size, n_embd)


@torch.no_grad()
def histograms(tensors: dict[str, torch.Tensor], bins: int = 64) -> dict[str, Histogram]:
    """A histogram of each tensor, counted where the tensor lives (on a GPU, in a few kernels),
    in `bins` equal buckets between its smallest and largest value. Non-finite tensors are left
    out. Two waits for the device in all, however many tensors."""
    values = {name: t.detach().float().flatten() for name, t in tensors.items() if t.numel()}
    stats = [torch.stack((v.min(), v.max(), v.sum(), v.square().sum())) for v in values.values()]
    stats = torch.stack(stats).tolist() if stats else []  # (tensors, 4) on the CPU
    kept, counts = {}, []
    for (name, v), (low, high, total, squares) in zip(values.items(), stats, strict=True):
        if all(map(math.isfinite, (low, high, total, squares))):  # else left out
            top = high if high > low else low + 1.0  # a constant tensor: one bucket holds it all
            limits = [low + (top - low) / bins * (i + 1) for i in range(bins)]  # right edges
            kept[name] = (low, high, v.numel(), total, squares, limits)
            counts.append(torch.histc(v, bins, low, top))
    rows = torch.stack(counts).tolist() if counts else []  # (tensors, bins) on the CPU
    return {name: Histogram(*kept[name], row) for name, row in zip(kept, rows, strict=True)}


@torch.no_grad()
def look_inside_the_model(model: GPT, probe: list[int], step: int) -> Inside:
    """The numbers of TensorBoard's views, computed on the model's device and copied off it."""
    idx = torch.tensor([probe], device=next(model.parameters()).device)
    maps = [layer[0].cpu() for layer in attention_maps(model, idx)]
    tensors = {}
    for name, p in model.named_parameters():
        tensors[f"weights/values/{name}"] = p
        if p.grad is not None:
            tensors[f"weights/gradients/{name}"] = p.grad
    embedding = model.transformer.wte.weight.detach().float().cpu()
    return Inside(step, maps, histograms(tensors), embedding)


def log_inside_the_model(logger: Any, inside: Inside, pictures: AttentionPictures) -> None:
    """Inside as TensorBoard's IMAGES (the attention maps), HISTOGRAMS (every parameter's values
    and latest gradient) and PROJECTOR (the embedding, one label per character)."""
    step = inside.step
    for layer, maps in enumerate(inside.attention):
        title = f"layer {layer} at iteration {step}: each row's weights over itself and before"
        logger.image(f"self_attention/layer_{layer}", pictures.draw(layer, maps, title), step)
    for tag, histogram in inside.histograms.items():
        logger.histogram(tag, histogram, step)
    labels = [visible(c) for c in pictures.tokenizer.chars]
    logger.embedding(inside.embedding, labels, step)
