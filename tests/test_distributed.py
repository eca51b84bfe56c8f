"""Distributed training with torchrun and gloo on the CPU: real processes, real collectives."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ddp_step_worker as worker
import pytest
import torch
from helpers import ROOT, flags, run, scalar_points, tensorboard_runs, torchrun

from checkpoint import load_checkpoint
from infra.device import Runtime
from training.trainer import Trainer

TORCHRUN = torchrun(2)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not torch.distributed.is_available(), reason="torch.distributed is not built in"
    ),
]


def test_two_ranks_with_batch_b_update_like_one_process_with_batch_2b(tmp_path):
    result = run([*TORCHRUN, "tests/ddp_step_worker.py", str(tmp_path / "ddp.pt")])
    assert result.returncode == 0, result.stderr[-3000:]
    distributed = torch.load(tmp_path / "ddp.pt", weights_only=True)

    def single_process() -> Trainer:
        return Trainer(
            worker.config(1, worker.BATCH, str(tmp_path)),
            Runtime(torch.device("cpu"), torch.float32),
            worker.synthetic_data(),
        )

    initial = single_process().model.state_dict()
    single = single_process()
    grads = worker.train_on(single, rank=0, world_size=1)
    # The same gradient, to fp32 rounding: the mean over all 16 windows, not a sum or a share.
    for name, grad in grads.items():
        torch.testing.assert_close(distributed["grads"][name], grad, atol=1e-7, rtol=1e-5, msg=name)
    # And the same weights after 3 AdamW steps; Adam divides by sqrt(v), which magnifies rounding
    # noise in near-zero gradients, so this tolerance is looser than the updates are small.
    for name, weight in single.model.state_dict().items():
        assert (weight - initial[name]).abs().max() > 1e-2, f"{name} did not train"
        torch.testing.assert_close(
            distributed["weights"][name], weight, atol=1e-4, rtol=0, msg=name
        )


def test_torchrun_trains_tiny_with_gloo_and_resumes(tiny_argv, tmp_path):
    out_dir = tmp_path / "run"
    argv = ["train.py", *tiny_argv("--gradient_accumulation_steps", "2")]
    result = run([*TORCHRUN, *argv])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "terminate called" not in result.stderr
    assert result.stdout.count("done:") == 1  # only rank 0 prints
    assert "2 micro-steps x 2 processes" not in result.stdout  # accumulation is split by ranks
    assert "1 micro-step x 2 processes x 8 batch x 32 block = 512" in result.stdout
    assert sorted(p.name for p in out_dir.iterdir() if p.suffix == ".pt") == ["best.pt", "last.pt"]
    assert len(list(out_dir.glob("events.out.tfevents.*"))) == 1  # rank 0 alone writes
    assert sorted(tensorboard_runs(out_dir).Runs()) == ["."]  # one run, one entry
    val = list(scalar_points(out_dir, "loss/val").values())
    assert val[-1] < val[0] - 0.5
    checkpoint = load_checkpoint(out_dir / "last.pt")
    assert len(checkpoint["rng"]) == 2  # every rank's batch stream, for an exact resume

    resumed = run([*TORCHRUN, *argv, "--resume", "--max_iters", "80"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint(out_dir / "last.pt")["iter_num"] == 80


def test_torchrun_job_owns_its_directory_and_sigterm_stops_every_rank_with_a_checkpoint(
    tiny_argv, tmp_path
):
    out_dir = tmp_path / "run"
    forever = flags(max_iters=10**6, eval_interval=10**6, log_interval=5)
    argv = ["train.py", *tiny_argv("--gradient_accumulation_steps", "2", *forever)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*TORCHRUN, *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    for line in process.stdout:
        if line.startswith("iter 20:"):
            break
    # while it runs, the directory is the torchrun job's: a plain train.py there is refused
    intruder = run([sys.executable, "train.py", *tiny_argv("--overwrite")])
    assert intruder.returncode == 1 and f"{out_dir} is in use" in intruder.stderr
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)  # no rank may hang in a collective
    assert process.returncode != 0
    assert err.count("stopped by SIGTERM") == 2  # both ranks, each with its own line
    assert "terminate called" not in err  # no rank aborted while closing the process group
    assert 20 <= load_checkpoint(out_dir / "last.pt")["iter_num"] < 1000000


def child_with_rank(parent: int, rank: int) -> int:
    """The pid of torchrun's worker process of that rank (Linux: read from /proc)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(entry)
    raise AssertionError(f"no worker of rank {rank} under {parent}")


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the rank's process through /proc")
def test_a_rank_that_stops_answering_ends_the_job_in_bounded_time_with_one_line(
    tiny_argv, tmp_path
):
    """A real torchrun job whose rank 1 is stopped (SIGSTOP: alive, silent): rank 0 gives up
    after dist_timeout with one line, and the checkpoint it had written stays whole."""
    forever = flags(max_iters=10**6, eval_interval=20, log_interval=5, dist_timeout=3)
    argv = ["train.py", *tiny_argv("--gradient_accumulation_steps", "2", *forever)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "stdout.txt"
    with open(log, "w") as stdout:
        process = subprocess.Popen(
            [*TORCHRUN, *argv], cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True,
            env=env,
        )  # fmt: skip
    stopped = None
    try:
        deadline = time.monotonic() + 60
        while "iter 25:" not in log.read_text():  # after the checkpoint at 20
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        stopped = child_with_rank(process.pid, 1)
        os.kill(stopped, signal.SIGSTOP)
        start = time.monotonic()
        for line in process.stderr:
            if "stopped answering" in line:
                break
        elapsed = time.monotonic() - start
        os.kill(stopped, signal.SIGCONT)  # let torchrun end it now rather than after its grace
        err = line + process.communicate(timeout=60)[1]
    finally:
        if stopped is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGKILL)
        process.kill()
    assert elapsed < 3 + 10, elapsed  # dist_timeout, and the time to say so
    lines = [line for line in err.splitlines() if "stopped answering" in line]
    rank0 = [line for line in lines if line.startswith("[rank 0] train.py: error:")]
    assert len(rank0) == 1 and "dist_timeout" in rank0[0], err[-2000:]
    assert "]: Traceback" not in err  # no rank's traceback ([rank0]: ...), only torchrun's own
    assert load_checkpoint(tmp_path / "run" / "last.pt")["iter_num"] >= 20
