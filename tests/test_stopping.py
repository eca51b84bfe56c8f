"""Stopping a run: Ctrl-C, SIGTERM and a closed terminal save last.pt and say how to go on; a
non-finite loss keeps the last good checkpoint; a closed output does not end the run."""

from __future__ import annotations

import shlex
import signal
import sys

import pytest
import torch
from helpers import run, start_training

import train
from checkpoint import load_checkpoint
from training.command_line import parse_command_line
from training.stopping import NonFiniteLoss


@pytest.mark.e2e
def test_sigint_saves_last_checkpoint_and_resume_continues(tiny_argv, tmp_path):
    argv = tiny_argv("--max_iters", "100000", "--eval_interval", "100000", "--log_interval", "5")
    process = start_training(argv)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "SIGINT" in err and "--resume" in err
    stopped_at = load_checkpoint(tmp_path / "run" / "last.pt")["iter_num"]
    assert 5 <= stopped_at < 100000
    # the hint is a command that works when pasted (here with a nearer end than 100000)
    pasted = shlex.split(err.split("Continue with: ")[1].split(" (in Python:")[0])
    assert pasted[:3] == ["python", "train.py", "--resume"]
    resumed = run([sys.executable, *pasted[1:], "--max_iters", str(stopped_at + 5)])
    assert resumed.returncode == 0, resumed.stderr
    assert "keeps the learning-rate schedule" in resumed.stdout
    assert load_checkpoint(tmp_path / "run" / "last.pt")["iter_num"] == stopped_at + 5


@pytest.mark.e2e
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_argv, tmp_path, monkeypatch):
    from model import GPT

    original_forward = GPT.forward
    calls = {"n": 0}

    def goes_nan_after_25_steps(self, idx, targets=None, kv_cache=None):
        logits, loss = original_forward(self, idx, targets, kv_cache)
        if self.training:
            calls["n"] += 1
            if calls["n"] > 25:
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", goes_nan_after_25_steps)
    with pytest.raises(NonFiniteLoss):
        train.train(**parse_command_line(tiny_argv("--log_interval", "1")))
    calls["n"] = 0
    assert train.main(tiny_argv("--log_interval", "1", "--overwrite")) == 1
    good = load_checkpoint(tmp_path / "run" / "last.pt")
    assert good["iter_num"] == 20
    assert all(torch.isfinite(t).all() for t in good["model"].values())


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_a_closed_terminals_sighup_save_like_ctrl_c(tiny_argv, tmp_path, signum):
    argv = tiny_argv("--max_iters", "100000", "--eval_interval", "100000", "--log_interval", "5")
    process = start_training(argv)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    assert f"stopped by {signal.Signals(signum).name}" in err and "Traceback" not in err
    assert load_checkpoint(tmp_path / "run" / "last.pt")["iter_num"] >= 5


@pytest.mark.e2e
def test_a_closed_stdout_does_not_end_the_run(tiny_argv, tmp_path):
    """`train.py ... | head -n 3`: the reader goes away; the run trains to the end and saves."""
    process = start_training(tiny_argv("--log_interval", "5"))
    process.stdout.close()  # like head exiting
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err
    assert load_checkpoint(tmp_path / "run" / "last.pt")["iter_num"] == 60


@pytest.mark.e2e
def test_ctrl_c_in_the_final_exact_pass_says_what_was_saved(tiny_argv, monkeypatch, capsys):

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "exact_loss", interrupted)
    assert train.main(tiny_argv("--max_iters", "20")) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "last.pt holds iteration 20" in err
