"""Evaluation, in one place: `evaluate`, what the loop calls; `estimate_loss`, a pure function."""

from __future__ import annotations

import math
import time

import torch
import torch.distributed as dist

from data import PreparedData, get_batch
from infra.device import Runtime
from infra.errors import ConfigError
from model import evaluating, generate
from training.config import TrainConfig
from training.logger import Logger
from training.rng import derived_seed
from training.stopping import NonFiniteLoss
from training.trainer import Trainer
from viz.figures import AttentionPictures
from viz.inspection import Inside, log_inside_the_model, look_inside_the_model

PROBE_CHARS = 40  # the default probe's length: a label per character must stay readable


def evaluate(
    trainer: Trainer, logger: Logger, pictures: AttentionPictures, extras: bool = True
) -> dict[str, float]:
    """Both losses, printed, logged and checked finite. With extras, past iteration 0 (the
    untrained model: its sample is noise, and the seed alone remakes it), a sample, the views
    inside the model for TensorBoard and the checkpoint (best.pt too, at a best val loss)."""
    rt, cfg, step, tokenizer = trainer.runtime, trainer.config, trainer.iter_num, pictures.tokenizer
    with trainer.clock.paused():
        losses = estimate_loss(trainer.compiled_model, trainer.data, cfg, rt)
        trainer.console.print(
            f"iter {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
        )
        if not all(math.isfinite(v) for v in losses.values()):
            raise NonFiniteLoss(f"evaluation at iteration {step} gave a non-finite loss")
        logger.scalar("train_loss", losses["train"], step)
        logger.scalar("val_loss", losses["val"], step)
        best = trainer.record_evaluation(losses, extras)
        if extras and step > 0:
            # the sample and the views are skipped while they have taken more than extras_budget
            # of the run's time (both threads' time: on two cores the background's is training's)
            now, spent = time.perf_counter(), trainer.extras_seconds
            budget = cfg.extras_budget * (now - trainer.clock.started)
            affordable = cfg.extras_budget >= 1 or spent <= budget
            if not affordable and not trainer.said_extras_wait:
                trainer.said_extras_wait = True
                share = f"{cfg.extras_budget:.0%}"
                trainer.console.print(f"(past {share} of the run's time, the sample and the views "
                                      "skip evaluations: extras_budget)")  # fmt: skip
            if affordable and cfg.sample_chars and rt.is_main:  # from a newline, a fixed seed
                start = tokenizer.encode("\n") if "\n" in tokenizer.stoi else [0]
                generator = torch.Generator(rt.device).manual_seed(derived_seed(cfg.seed, "sample"))
                with evaluating(trainer.model), rt.autocast():
                    idx = torch.tensor([start], device=rt.device)
                    out = generate(trainer.model, idx, cfg.sample_chars, generator=generator)
                logger.text("sample", tokenizer.decode(out[0, len(start) :].tolist()), step)
            trainer.extras_seconds += time.perf_counter() - now
            # the previous evaluation's writes end before this one's start: at most one in memory
            trainer.background.wait()
            if affordable and cfg.inspect and logger.active:
                now = time.perf_counter()
                inside = look_inside_the_model(trainer.model, pictures.ids, step)
                trainer.background.submit(lambda: draw(trainer, logger, inside, pictures))
                trainer.extras_seconds += time.perf_counter() - now
            trainer.save(best=best)  # written in the background
        logger.flush()
    return losses


def draw(trainer: Trainer, logger: Logger, inside: Inside, pictures: AttentionPictures) -> None:
    """log_inside_the_model, on the background thread, its time added to the extras'."""
    began = time.perf_counter()
    log_inside_the_model(logger, inside, pictures)
    trainer.extras_seconds += time.perf_counter() - began


@torch.no_grad()
def estimate_loss(
    model: torch.nn.Module, data: PreparedData, config: TrainConfig, rt: Runtime
) -> dict[str, float]:
    """Mean loss over eval_iters batches of each split (model: the GPT or its compiled form),
    dropout off, averaged over ranks, on the same windows at every evaluation (a fixed seed): the
    curve shows the model change, not the sample."""
    losses = {}
    with evaluating(model):
        for split, tokens in (("train", data.train), ("val", data.val)):
            seed = derived_seed(config.seed, "eval", split, rt.rank)
            generator = torch.Generator().manual_seed(seed)
            total = torch.zeros((), device=rt.device)
            for _ in range(config.eval_iters):
                x, y = get_batch(tokens, config.batch_size, config.block_size, generator, rt.device)
                with rt.autocast():
                    _, loss = model(x, y)
                total += loss.float()
            if rt.distributed:
                dist.all_reduce(total)
            losses[split] = total.item() / (config.eval_iters * rt.world_size)
    return losses


def probe_pictures(config: TrainConfig, data: PreparedData) -> AttentionPictures:
    """TensorBoard's attention pictures over config.probe_text, or by default the start of the
    validation split's first line of 24 characters or more."""
    tokenizer, text = data.tokenizer, config.probe_text
    if not text:
        lines = tokenizer.decode(data.val[:5000].tolist()).split("\n")
        text = next((line for line in lines if len(line) >= 24), lines[0] or "\n")
        text = text[: min(PROBE_CHARS, config.block_size)]
    if unknown := tokenizer.unknown_characters(text):
        shown = ", ".join(repr(c) for c in unknown)
        raise ConfigError(f"probe_text: {shown} not in the vocabulary of the data")
    return AttentionPictures(tokenizer.encode(text), tokenizer)
