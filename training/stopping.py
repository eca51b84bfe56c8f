"""Stopping a run cleanly: on a signal, on a non-finite loss, and on every rank at once. Under
torchrun every rank must stop at the same iteration, or one would wait forever in a collective for
another; so a signal (or a hook's StopTraining under torchrun) is only recorded when it arrives,
the ranks compare notes at the next log point, in the all-reduce that averages the step's loss
(`agree_at_log_point`), and all stop there together, after saving last.pt."""

from __future__ import annotations

import math
import signal
from types import FrameType

from infra.errors import UserError
from training.distributed import CoordinatedStop, StepReport


class NonFiniteLoss(CoordinatedStop, UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept. Every rank sees the same
    averaged loss, so every rank raises it at the same iteration."""


# Every way a user stops a run: Ctrl-C, `kill` (and torchrun passing it on), a closed terminal.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class SignalCatcher:
    """While active, SIGINT, SIGTERM and SIGHUP are recorded in `signum` instead of stopping the
    process at once; a second one raises KeyboardInterrupt (quit now, without saving)."""

    def __init__(self, say=print) -> None:
        self.signum: int | None = None
        self.say = say
        self._previous: dict[int, object] = {}

    def __enter__(self) -> SignalCatcher:
        for s in STOP_SIGNALS:
            self._previous[s] = signal.signal(s, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        self.say(
            f"{signal.Signals(signum).name}: saving a checkpoint at the next log point "
            "(interrupt again to quit without saving)"
        )


def check_finite(report: StepReport, iteration: int, grads_must_be_finite: bool) -> None:
    """Raise NonFiniteLoss for a NaN or infinite loss (or gradient norm, where fp16's scaler does
    not already skip such steps)."""
    if not math.isfinite(report.loss) or (
        grads_must_be_finite and not math.isfinite(report.grad_norm)
    ):
        raise NonFiniteLoss(
            f"loss {report.loss}, gradient norm {report.grad_norm} at iteration {iteration}"
        )
