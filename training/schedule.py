"""Learning-rate schedules: linear warm-up, then constant, linear, cosine or WSD decay to min_lr."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.config import TrainConfig

LR_SCHEDULES = ("constant", "linear", "cosine", "wsd")


def get_lr(it: int, config: TrainConfig) -> float:
    """The learning rate for optimizer step `it` (0-based).

    Warm-up rises linearly to learning_rate over warmup_iters steps, starting at
    learning_rate / (warmup_iters + 1), never 0: a step at rate 0 would be wasted. After warm-up:
    - constant: learning_rate.
    - linear:   straight down to min_lr at lr_decay_iters.
    - cosine:   half a cosine down to min_lr at lr_decay_iters (Loshchilov & Hutter 2017).
    - wsd:      warm-up, stable at learning_rate, then a linear cool-down over the last
                cooldown_frac of lr_decay_iters (Hägele et al. 2024, "Scaling Laws and
                Compute-Optimal Training Beyond Fixed Training Durations").
    After lr_decay_iters every schedule but constant stays at min_lr.
    """
    lr, min_lr = config.learning_rate, config.min_lr
    warmup, decay_end = config.warmup_iters, config.decay_end
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if config.lr_schedule == "constant":
        return lr
    if it >= decay_end:
        return min_lr
    if config.lr_schedule == "wsd":
        decay_start = max(warmup, decay_end - round(config.cooldown_frac * decay_end))
        if it < decay_start:
            return lr
        progress = (it - decay_start) / (decay_end - decay_start)
        return lr - progress * (lr - min_lr)
    progress = (it - warmup) / (decay_end - warmup)  # 0 -> 1 over the decay
    if config.lr_schedule == "linear":
        return lr - progress * (lr - min_lr)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)  # cosine
