"""What the trainer measures at each evaluation: the loss on fixed windows of each split, a short
sample of text, and views inside the model for TensorBoard (attention maps of a probe text,
weight and gradient histograms, the character embedding).

The views are taken in two halves, so that an evaluation on a GPU costs the training loop next
to nothing beyond its loss estimate: `look_inside_the_model` computes on the training device what
TensorBoard needs (the maps, the histograms' counts, the embedding) and copies those few numbers
off it, and `log_inside_the_model`, run by a background thread (infra/background.py), draws and
writes them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist

from data import CharTokenizer, PreparedData, get_batch
from infra.cli import ConfigError
from infra.device import Runtime
from infra.figures import AttentionPictures, visible
from model import GPT, generate
from model.attention_maps import attention_maps
from training.config import TrainConfig
from training.logger import Histogram, Logger
from training.rng import derived_seed

PROBE_CHARS = 40  # the default probe's length: a label per character must stay readable


@torch.no_grad()
def estimate_loss(
    model: GPT, eval_model: torch.nn.Module, data: PreparedData, config: TrainConfig, rt: Runtime
) -> dict[str, float]:
    """Mean loss over eval_iters batches of each split, dropout off, averaged over ranks.
    eval_model is model itself or its compiled form. The windows are the same at every
    evaluation (a fixed seed), so the curve shows the model changing, not the sample."""
    model.eval()
    losses = {}
    for split, tokens in (("train", data.train), ("val", data.val)):
        generator = torch.Generator().manual_seed(derived_seed(config.seed, "eval", split, rt.rank))
        total = torch.zeros((), device=rt.device)
        for _ in range(config.eval_iters):
            x, y = get_batch(tokens, config.batch_size, config.block_size, generator, rt.device)
            with rt.autocast():
                _, loss = eval_model(x, y)
            total += loss.float()
        if rt.distributed:
            dist.all_reduce(total)
        losses[split] = total.item() / (config.eval_iters * rt.world_size)
    model.train()
    return losses


def sample_text(model: GPT, tokenizer: CharTokenizer, n_chars: int, seed: int, rt: Runtime) -> str:
    """A short sample from the current model, from a newline, with a fixed seed."""
    start = tokenizer.encode("\n") if "\n" in tokenizer.stoi else [0]
    idx = torch.tensor([start], dtype=torch.long, device=rt.device)
    generator = torch.Generator(device=rt.device).manual_seed(derived_seed(seed, "sample"))
    model.eval()
    with rt.autocast():
        out = generate(model, idx, n_chars, generator=generator)
    model.train()
    return tokenizer.decode(out[0, len(start) :].tolist())


def probe_tokens(config: TrainConfig, data: PreparedData) -> list[int]:
    """The probe text's tokens: config.probe_text, or by default the start of the first line of
    the validation split that has at least 24 characters (its length is checked by the config).
    Characters the data does not have are a ConfigError that names them."""
    tokenizer, text = data.tokenizer, config.probe_text
    if not text:
        lines = tokenizer.decode(data.val[:5000].tolist()).split("\n")
        text = next((line for line in lines if len(line) >= 24), lines[0] or "\n")
        text = text[: min(PROBE_CHARS, config.block_size)]
    unknown = tokenizer.unknown_characters(text)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown)
        raise ConfigError(f"probe_text: {shown} not in the vocabulary of the data")
    return tokenizer.encode(text)


@dataclass(frozen=True)
class Inside:
    """What TensorBoard shows of the model at one evaluation, on the CPU: each layer's attention
    maps over the probe (n_head, T, T), every parameter's and gradient's histogram, and the
    token embedding (vocab_size, n_embd)."""

    step: int
    attention: list[torch.Tensor]
    histograms: dict[str, Histogram]
    embedding: torch.Tensor


HISTOGRAM_BINS = 64


@torch.no_grad()
def histograms(
    tensors: dict[str, torch.Tensor], bins: int = HISTOGRAM_BINS
) -> dict[str, Histogram]:
    """A histogram of each tensor, counted where the tensor lives (on a GPU, in a few kernels),
    in `bins` equal buckets between its smallest and largest value. Non-finite tensors are left
    out. Two waits for the device in all, however many tensors."""
    values = {name: t.detach().float().flatten() for name, t in tensors.items() if t.numel()}
    if not values:
        return {}
    stats = torch.stack(
        [torch.stack((v.min(), v.max(), v.sum(), v.square().sum())) for v in values.values()]
    ).tolist()  # (tensors, 4) on the CPU
    kept, counts = [], []
    for (name, v), (low, high, total, squares) in zip(values.items(), stats, strict=True):
        if not all(map(math.isfinite, (low, high, total, squares))):
            continue
        top = high if high > low else low + 1.0  # a constant tensor: one bucket holds it all
        kept.append((name, low, high, total, squares, v.numel(), top))
        counts.append(torch.histc(v, bins, low, top))
    if not kept:
        return {}
    all_counts = torch.stack(counts).tolist()
    result = {}
    for (name, low, high, total, squares, n, top), row in zip(kept, all_counts, strict=True):
        width = (top - low) / bins
        limits = [low + width * (i + 1) for i in range(bins)]  # each bucket's right edge
        result[name] = Histogram(low, high, n, total, squares, limits, row)
    return result


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


def log_inside_the_model(
    logger: Logger, inside: Inside, pictures: AttentionPictures, tokenizer: CharTokenizer
) -> None:
    """For TensorBoard, from what look_inside_the_model took: each layer's attention maps for the
    probe (IMAGES), every parameter's values and latest gradient (HISTOGRAMS), and the token
    embedding with one label per character (PROJECTOR). Runs beside training, never in it."""
    step = inside.step
    for layer, maps in enumerate(inside.attention):
        title = f"layer {layer} at iteration {step}: each row's weights over the characters before"
        logger.image(f"self_attention/layer_{layer}", pictures.draw(layer, maps, title), step)
    for tag, histogram in inside.histograms.items():
        logger.histogram(tag, histogram, step)
    labels = [visible(c) for c in tokenizer.chars]
    logger.embedding(inside.embedding, labels, step)
