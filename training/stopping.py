"""Stopping a run cleanly: on a signal, on a non-finite loss, and on every rank at once.

Under torchrun every rank must stop at the same iteration, or one would wait forever in a
collective for another. So a signal (Ctrl-C's SIGINT, SIGTERM, a closed terminal's SIGHUP) is only
recorded when it arrives; the ranks compare notes at the next log point, in the same small
all-reduce that averages the step's loss, and all stop there together, after saving last.pt.
"""

from __future__ import annotations

import contextlib
import math
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import torch
import torch.distributed as dist

from infra.device import DEFAULT_DIST_TIMEOUT, Runtime, setup_runtime, teardown_runtime
from infra.errors import UserError

# How gloo, NCCL and DDP say that another process stopped answering or went away.
PEERS_LOST = ("Timed out", "timed out", "timeout", "Connection closed", "Connection reset")


def lost_peers(error: RuntimeError) -> bool:
    return isinstance(error, dist.DistError) or any(words in str(error) for words in PEERS_LOST)


class PeersLost(UserError):
    """Under torchrun, the other processes did not answer within the process group's timeout."""


class CoordinatedStop(Exception):
    """Raised by every rank at the same point (an interrupt, a non-finite loss), so all of them can
    still meet at a barrier on the way out."""


@contextlib.contextmanager
def runtime_for(
    device: str = "auto", dtype: str = "auto", timeout: float = DEFAULT_DIST_TIMEOUT
) -> Iterator[Runtime]:
    """setup_runtime, and on the way out a barrier, then the process group's teardown. Without the
    barrier a rank that finishes first can close the group while another is still using it (gloo
    then aborts the process). The barrier is skipped when only this rank failed: it would wait for
    ranks that are not coming."""
    runtime = setup_runtime(device, dtype, timeout)
    try:
        yield runtime
        runtime.barrier()
    except CoordinatedStop:
        runtime.barrier()
        raise
    except RuntimeError as e:  # gloo and DDP report a silent peer as a RuntimeError
        if not runtime.distributed or not lost_peers(e):
            raise
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise PeersLost(
            f"the other processes stopped answering (waited up to {timeout:g} s, dist_timeout; "
            f"{reason}); the last checkpoint is whole: resume the job from it"
        ) from None
    finally:
        teardown_runtime()


class NonFiniteLoss(CoordinatedStop, UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept. Every rank sees the same
    averaged loss, so every rank raises it at the same iteration."""


class TrainingInterrupted(CoordinatedStop, UserError):
    """A signal (SIGINT, SIGTERM, SIGHUP) arrived and last.pt was saved. The exit code is 128 +
    the signal's number, as a shell reports a process the signal ended; `resume` is the command
    that continues the run."""

    label = ""

    def __init__(self, signum: int, checkpoint: Path, resume: str = "") -> None:
        self.signum, self.checkpoint, self.resume = signum, checkpoint, resume
        self.exit_code = 128 + signum
        hint = f". Continue with: {resume}" if resume else ""
        super().__init__(f"stopped by {signal.Signals(signum).name}; saved {checkpoint}{hint}")


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


@dataclass(frozen=True)
class StepReport:
    """A log point's numbers, the same on every rank."""

    loss: float
    grad_norm: float
    stop_requested: bool  # some rank received a signal


def agree_at_log_point(
    loss: torch.Tensor, grad_norm: torch.Tensor, signum: int | None, rt: Runtime
) -> StepReport:
    """Every rank calls this at the same iteration: the step's loss and gradient norm averaged
    over ranks, and whether any rank was asked to stop, in one all-reduce."""
    stats = torch.stack(
        [
            loss.float(),
            grad_norm.float(),
            torch.tensor(float(signum is not None), device=loss.device),
        ]
    )
    if rt.distributed:
        dist.all_reduce(stats)
        stats[:2] /= rt.world_size
    loss_value, grad_norm_value, stop_votes = stats.tolist()  # waits for the GPU
    return StepReport(loss_value, grad_norm_value, stop_votes > 0)


def check_finite(report: StepReport, iteration: int, grads_must_be_finite: bool) -> None:
    """Raise NonFiniteLoss for a NaN or infinite loss (or gradient norm, where fp16's scaler does
    not already skip such steps)."""
    if not math.isfinite(report.loss) or (
        grads_must_be_finite and not math.isfinite(report.grad_norm)
    ):
        raise NonFiniteLoss(
            f"loss {report.loss}, gradient norm {report.grad_norm} at iteration {iteration}"
        )
