"""Learning-rate schedules: linear warm-up, then constant, linear, cosine or WSD decay to min_lr."""

from __future__ import annotations

import math
from dataclasses import dataclass

LR_SCHEDULES = ("constant", "linear", "cosine", "wsd")


@dataclass(frozen=True)
class Schedule:
    """The numbers a schedule is made of (TrainConfig.schedule gives a run's)."""

    name: str  # one of LR_SCHEDULES
    learning_rate: float
    min_lr: float
    warmup_iters: int
    decay_end: int  # lr_decay_iters, or max_iters when that is not set
    cooldown_frac: float  # wsd only


def get_lr(it: int, schedule: Schedule) -> float:
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
    lr, min_lr = schedule.learning_rate, schedule.min_lr
    warmup, decay_end = schedule.warmup_iters, schedule.decay_end
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if schedule.name == "constant":
        return lr
    if it >= decay_end:
        return min_lr
    if schedule.name == "wsd":
        decay_start = max(warmup, decay_end - round(schedule.cooldown_frac * decay_end))
        if it < decay_start:
            return lr
        progress = (it - decay_start) / (decay_end - decay_start)
        return lr - progress * (lr - min_lr)
    progress = (it - warmup) / (decay_end - warmup)  # 0 -> 1 over the decay
    if schedule.name == "linear":
        return lr - progress * (lr - min_lr)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)  # cosine
