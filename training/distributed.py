"""What processes under torchrun do together; without torchrun, one process's own work."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from infra.device import DEFAULT_DIST_TIMEOUT, Runtime, setup_runtime, teardown_runtime
from infra.errors import RunDirError, UserError, first_line
from training.rng import RandomStreams, RngState

# How gloo, NCCL and DDP say that another process stopped answering or went away.
PEERS_LOST = ("Timed out", "timed out", "timeout", "Connection closed", "Connection reset")


class CoordinatedStop(Exception):
    """Raised by every rank at one point (a signal, a non-finite loss): all meet at the barrier."""


@contextlib.contextmanager
def runtime_for(
    device: str = "auto", dtype: str = "auto", timeout: float = DEFAULT_DIST_TIMEOUT, join=True
) -> Iterator[Runtime]:
    """setup_runtime; on the way out a barrier (else a rank that finishes first can close the group
    while another still uses it, and gloo aborts the process), then the teardown. No barrier when
    only this rank failed: it would wait for ranks that are not coming."""
    runtime = setup_runtime(device, dtype, timeout, join)
    try:
        yield runtime
        runtime.barrier()
    except CoordinatedStop:
        runtime.barrier()
        raise
    except RuntimeError as e:  # gloo and DDP report a silent peer as a RuntimeError
        lost = isinstance(e, dist.DistError) or any(words in str(e) for words in PEERS_LOST)
        if not runtime.distributed or not lost:
            raise
        raise UserError(  # the other processes did not answer within dist_timeout
            f"the other processes stopped answering (waited up to {timeout:g} s, dist_timeout; "
            f"{first_line(e, 160)}); the last checkpoint is whole: resume the job from it"
        ) from None
    finally:
        teardown_runtime()


@dataclass(frozen=True)
class StepReport:
    """A log point's numbers, the same on every rank."""

    loss: float
    grad_norm: float
    stop_requested: bool  # some rank received a signal


def agree_at_log_point(
    loss: torch.Tensor, grad_norm: torch.Tensor, stop_asked: bool, rt: Runtime
) -> StepReport:
    """Every rank calls this at the same iteration: the step's loss and gradient norm averaged
    over ranks, and whether any rank was asked to stop, in one all-reduce."""
    asked = torch.tensor(float(stop_asked), device=loss.device)
    stats = torch.stack([loss.float(), grad_norm.float(), asked])
    if rt.distributed:
        dist.all_reduce(stats)
        stats[:2] /= rt.world_size
    loss_value, grad_norm_value, stop_votes = stats.tolist()  # waits for the GPU
    return StepReport(loss_value, grad_norm_value, stop_votes > 0)


def decided_by_rank0(rt: Runtime, out_dir: Path, action: Callable[[], Any]) -> Any:
    """action() on rank 0, its refusal (a RunDirError or OSError) told to every rank in one
    broadcast, so that a refusal stops all of them cleanly instead of leaving some waiting."""
    result, problem = None, None
    if rt.is_main:
        try:
            result = action()
        except (RunDirError, OSError) as e:
            problem = str(e)
    if rt.distributed:
        shared = [problem]
        dist.broadcast_object_list(shared, src=0)
        problem = shared[0]
    if problem is not None:
        raise RunDirError(problem if rt.is_main else f"rank 0 could not use {out_dir}")
    return result


def all_rng_states(rt: Runtime, streams: RandomStreams) -> list[RngState]:
    """Every rank's random streams, in rank order (a collective under DDP: all ranks call it)."""
    state = streams.state_dict()
    if not rt.distributed:
        return [state]
    states: list[Any] = [None] * rt.world_size
    dist.all_gather_object(states, state)
    return states
