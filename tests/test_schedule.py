"""Learning-rate schedules at their endpoints and midpoints: AdamW's rate, learning_rate times the
schedule's multiplier."""

from __future__ import annotations

import itertools

import pytest

from training.config import TrainConfig
from training.optim import lr_multiplier

LR, MIN = 1e-3, 1e-4


def get_lr(it: int, config: TrainConfig) -> float:
    return config.learning_rate * lr_multiplier(it, config)


def config(schedule: str, **kw) -> TrainConfig:
    values = dict(
        learning_rate=LR,
        min_lr_ratio=MIN / LR,
        warmup_iters=100,
        lr_decay_iters=1100,
        max_iters=2000,
        lr_schedule=schedule,
    )
    values.update(kw)
    return TrainConfig(**values)


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine", "wsd"])
def test_warmup_is_linear_and_never_zero(schedule):
    c = config(schedule)
    assert get_lr(0, c) == pytest.approx(LR / 101)
    assert get_lr(49, c) == pytest.approx(LR * 50 / 101)
    assert get_lr(100, c) == pytest.approx(LR)
    assert get_lr(0, config(schedule, warmup_iters=0)) == pytest.approx(LR)


def test_constant_stays_at_the_peak():
    c = config("constant")
    assert [get_lr(i, c) for i in (100, 600, 1100, 1999)] == [LR] * 4


def test_linear_decays_in_a_straight_line_to_min_lr():
    c = config("linear")
    assert get_lr(600, c) == pytest.approx((LR + MIN) / 2)  # halfway through the decay
    assert get_lr(350, c) == pytest.approx(LR - 0.25 * (LR - MIN))
    assert get_lr(1100, c) == pytest.approx(MIN)
    assert get_lr(1500, c) == pytest.approx(MIN)


def test_cosine_is_half_a_cosine_to_min_lr():
    c = config("cosine")
    assert get_lr(600, c) == pytest.approx((LR + MIN) / 2)  # cos(pi/2) = 0
    assert get_lr(350, c) == pytest.approx(MIN + (LR - MIN) * (1 + 2**-0.5) / 2)  # cos(pi/4)
    assert get_lr(1100, c) == pytest.approx(MIN)
    assert get_lr(1999, c) == pytest.approx(MIN)


def test_wsd_holds_then_cools_down_over_the_last_fraction():
    c = config("wsd", cooldown_frac=0.2)  # cool-down from 1100 - 220 = 880 to 1100
    assert get_lr(500, c) == pytest.approx(LR)
    assert get_lr(879, c) == pytest.approx(LR)
    assert get_lr(990, c) == pytest.approx((LR + MIN) / 2)
    assert get_lr(1100, c) == pytest.approx(MIN)
    assert get_lr(1500, c) == pytest.approx(MIN)


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine", "wsd"])
def test_rate_never_leaves_min_lr_to_learning_rate_after_warmup(schedule):
    c = config(schedule)
    rates = [get_lr(i, c) for i in range(100, 2000)]
    assert min(rates) >= MIN - 1e-12 and max(rates) <= LR + 1e-12
    assert all(b <= a + 1e-15 for a, b in itertools.pairwise(rates))  # never rises again


def test_decay_length_defaults_to_max_iters():
    c = config("linear", lr_decay_iters=None, max_iters=1100)
    assert get_lr(600, c) == pytest.approx((LR + MIN) / 2)
