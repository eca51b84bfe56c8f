"""Training end to end on configs/tiny.yaml: TensorBoard files read back by TensorBoard's own
reader, the checkpoint's whole state, gradient accumulation, fixed validation windows, a text of
the user's own, and the console."""

from __future__ import annotations

import errno
import math
import os
import re
from dataclasses import replace

import pytest
import torch
from helpers import flags, scalar_points, tensorboard_runs

import train
from checkpoint import load_checkpoint
from infra.device import Runtime
from training.evaluation import estimate_loss
from training.trainer import Trainer


@pytest.mark.e2e
def test_tiny_run_writes_tensorboard_events_that_tensorboard_reads(tiny_argv, tmp_path, capsys):
    assert train.main(tiny_argv()) == 0
    run_dir = tmp_path / "run"
    runs = tensorboard_runs(run_dir)
    assert sorted(runs.Runs()) == ["."]  # the run is one run of TensorBoard's, no stray ones
    tags = runs.GetAccumulator(".").Tags()["tensors"]
    for tag in ("optimizer/lr", "optimizer/grad_norm", "speed/tokens_per_sec"):
        assert tag in tags, tag
    assert "sample/text_summary" in tags
    assert "_hparams_/experiment" in runs.GetAccumulator(".").PluginTagToContent("hparams")
    val = scalar_points(run_dir, "loss/val")
    assert list(val) == [0, 10, 20, 30, 40, 50, 60]
    assert all(math.isfinite(v) for v in val.values())
    assert val[60] < val[20] < val[0]
    assert abs(val[0] - math.log(65)) < 0.1
    assert {"last.pt", "best.pt", "config.yaml"} <= {p.name for p in run_dir.iterdir()}
    printed = capsys.readouterr().out
    assert "tokens per iteration: 1 micro-step x 1 process x 8 batch x 32 block = 256" in printed
    assert "eager (auto: eager on cpu" in printed  # compile: auto never compiles on a CPU
    # the settings that differ from the defaults are printed, and every one saved
    assert "settings differ from the defaults (all " in printed and "\n  n_layer: 2\n" in printed
    assert "dist_timeout" not in printed  # at its default
    saved = (run_dir / "config.yaml").read_text()
    assert "\nn_layer: 2\n" in saved and "\ndist_timeout: " in saved


@pytest.mark.e2e
def test_checkpoint_loads_with_weights_only_and_holds_the_whole_state(tiny_argv, tmp_path):
    assert train.main(tiny_argv()) == 0
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    for key in (
        "model",
        "optimizer",
        "scaler",
        "iter_num",
        "best_val_loss",
        "config",
        "vocab",
        "rng",
        "format_version",
        "model_args",
    ):
        assert key in checkpoint
    assert checkpoint["iter_num"] == 60
    assert len(checkpoint["vocab"]) == 65
    assert not any(k.startswith("_orig_mod") for k in checkpoint["model"])


def test_gradient_accumulation_equals_one_larger_batch(tiny_config, shakespeare):
    """Two micro-batches of B, loss scaled by 1/2, give the same update as one batch of 2B."""
    generator = torch.Generator().manual_seed(0)
    from data import get_batch

    x, y = get_batch(shakespeare.train, 8, 32, generator)
    runtime = Runtime(torch.device("cpu"), torch.float32)
    accumulated = Trainer(
        tiny_config(gradient_accumulation_steps=2, batch_size=4), runtime, shakespeare
    )
    single = Trainer(tiny_config(batch_size=8), runtime, shakespeare)
    accumulated.train_batches = iter([(x[:4], y[:4]), (x[4:], y[4:])])
    single.train_batches = iter([(x, y)])
    accumulated.train_step()
    single.train_step()
    for (name, a), b in zip(
        accumulated.model.named_parameters(), single.model.parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_validation_windows_are_the_same_at_every_evaluation(tiny_config, shakespeare):
    config, runtime = tiny_config(), Runtime(torch.device("cpu"), torch.float32)
    model = Trainer(config, runtime, shakespeare).model
    first = estimate_loss(model, shakespeare, config, runtime)
    assert first == estimate_loss(model, shakespeare, config, runtime)
    assert estimate_loss(model, shakespeare, replace(config, seed=7), runtime) != first


@pytest.mark.e2e
def test_own_text_corpus_trains(tmp_path, capsys):
    corpus = tmp_path / "mine.txt"
    corpus.write_text("To code, or not to code: that is the question.\n" * 200)
    argv = flags(
        config="tiny",
        inspect="false",
        dataset="text",
        data_path=corpus,
        data_dir=tmp_path / "prepared",
        out_dir=tmp_path / "run",
        max_iters=10,
        eval_interval=5,
    )
    assert train.main(argv) == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["vocab"] == sorted(set(corpus.read_text()))


@pytest.mark.e2e
def test_terminal_gets_a_progress_bar_and_a_log_file_gets_plain_lines(
    tiny_argv, capsys, monkeypatch
):
    from training.console import Console

    def fit(interactive: bool) -> tuple[str, str]:
        monkeypatch.setattr(train, "Console", lambda enabled: Console(enabled, interactive))
        argv = ("--max_iters", "20", "--eval_interval", "10", "--log_interval", "5")
        assert train.main(tiny_argv(*argv, "--loss_interval", "0", "--overwrite")) == 0
        captured = capsys.readouterr()
        return captured.out, captured.err

    out, err = fit(interactive=True)
    assert "100%|" in err and "20/20" in err and "tok/s" in err  # the bar, with its postfix
    assert "iter 10: train loss" in out  # evaluations still print, above the bar
    assert "iter 5: batch loss" not in out  # step lines go to the bar instead
    out, err = fit(interactive=False)
    assert "%|" not in err
    assert "iter 5: batch loss" in out and "iter 10: train loss" in out
    assert re.search(r"iter 5: batch loss .* tok/s, \d\d:\d\d left", out)  # the time left, per line


@pytest.mark.e2e
def test_loss_points_between_evaluations_add_no_checkpoint(tiny_argv, tmp_path, monkeypatch):
    saved = []
    original_save = Trainer.save

    def save(self, best=False):
        saved.append(self.iter_num)
        return original_save(self, best)

    monkeypatch.setattr(Trainer, "save", save)
    argv = tiny_argv("--max_iters", "20", "--eval_interval", "10", "--loss_interval", "4")
    assert train.main(argv) == 0
    for split in ("train", "val"):  # both losses at every 4th iteration, and at evaluations
        assert list(scalar_points(tmp_path / "run", f"loss/{split}")) == [0, 4, 8, 10, 12, 16, 20]
    assert saved == [10, 20]


def test_a_tensorboard_write_that_fails_is_one_warning_and_training_goes_on(tmp_path, capsys):
    from training.logger import TensorBoardLogger

    logger = TensorBoardLogger(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "events"))

    logger.writer.file_writer.add_summary = disk_full
    logger.scalar("lr", 1.0, 0)
    logger.scalar("val_loss", 0.5, 1)  # no second warning, no exception
    logger.flush()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk full" in err and "training goes on" in err
    assert not logger.active
