"""Resuming a run: exactly where it stopped, from a crash, from best.pt, from the previous
checkpoint format; and checkpoints that survive a crash while they are written."""

from __future__ import annotations

import errno
import math
import os
import shlex
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from helpers import ROOT, flags, run, scalar_points

import train
from checkpoint import load_checkpoint, save_checkpoint
from training.command_line import parse_command_line
from training.trainer import Trainer


def wait_for_the_next_second() -> None:
    """TensorBoard reads a run's event files in name order, and a name starts with the second the
    file was opened in. Two runs in one process within one second tie there, and the tie-break,
    a per-process counter, compares as text (10 before 9). The resumed run's purge drops only the
    steps read before it, so the crashed run's file, read after it, would keep its stale steps.
    A resume as users run it is a new process, opened seconds later: start-up alone takes two."""
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.05)


def final_state(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "last.pt")


RESUME_RUN = (
    "--max_iters",
    "20",
    "--lr_decay_iters",
    "20",
    "--eval_interval",
    "5",
    "--log_interval",
    "1",
    "--dropout",
    "0.1",
)


def assert_same_run(a: Path, b: Path) -> None:
    state_a, state_b = final_state(a), final_state(b)
    assert state_a["iter_num"] == state_b["iter_num"] == 20
    for name, tensor in state_a["model"].items():
        assert torch.equal(tensor, state_b["model"][name]), name
    for tag in ("loss/train_batch", "loss/val", "optimizer/lr"):
        assert scalar_points(a, tag) == scalar_points(b, tag), tag


@pytest.fixture(scope="module")
def straight_runs(tmp_path_factory, shakespeare_path, shakespeare) -> dict[str, Path]:
    """RESUME_RUN's 20 iterations in one go, with each optimizer: trained once for the module."""
    root = tmp_path_factory.mktemp("straight")
    runs = {}
    for optimizer in ("adamw", "muon"):
        paths = flags(
            data_path=shakespeare_path, data_dir=shakespeare.data_dir, out_dir=root / optimizer
        )
        argv = ["--config", "tiny", "--device", "cpu", "--inspect", "false", *paths]
        assert train.main([*argv, *RESUME_RUN, "--optimizer", optimizer]) == 0
        runs[optimizer] = root / optimizer
    return runs


@pytest.mark.e2e
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_matches_uninterrupted_run(tiny_argv, tmp_path, straight_runs, optimizer):
    """Stopped at 10 and resumed to 20 (schedule fixed by lr_decay_iters, dropout on): the same
    weights and the same losses as 20 iterations in one go. Both optimizers' states (AdamW's
    moments, Muon's momentum) survive the checkpoint."""
    stopped = ("--optimizer", optimizer, *RESUME_RUN, "--max_iters", "10")
    assert train.main(tiny_argv(*stopped, out="resumed")) == 0
    assert train.main(tiny_argv("--resume", "--max_iters", "20", out="resumed")) == 0
    assert_same_run(straight_runs[optimizer], tmp_path / "resumed")


@pytest.mark.e2e
def test_resume_after_a_crash_matches_and_tensorboard_has_no_duplicate_steps(
    tiny_argv, tmp_path, monkeypatch, straight_runs
):
    """A crash at iteration 13 loses the steps after the checkpoint at 10, though TensorBoard had
    logged them. The resumed run redoes them; TensorBoard shows each step once, the new values."""
    original_step = Trainer.train_step

    def crash_at_13(self):
        if self.iter_num == 13:
            raise RuntimeError("simulated crash")
        return original_step(self)

    monkeypatch.setattr(Trainer, "train_step", crash_at_13)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.train(**parse_command_line(tiny_argv(*RESUME_RUN, out="crashed")))
    monkeypatch.setattr(Trainer, "train_step", original_step)
    assert load_checkpoint(tmp_path / "crashed" / "last.pt")["iter_num"] == 10
    wait_for_the_next_second()
    assert train.main(tiny_argv("--resume", out="crashed")) == 0
    assert_same_run(straight_runs["adamw"], tmp_path / "crashed")


def bare_checkpoint(weight: torch.Tensor, iter_num: int) -> dict:
    """A checkpoint of the current layout around one tensor, for tests of the files alone."""
    from checkpoint import new_checkpoint

    return new_checkpoint(
        model={"w": weight}, model_args={}, optimizer=[], scaler={}, iter_num=iter_num,
        best_val_loss=math.inf, eval_losses={}, config={}, vocab=[], rng=[],
    )  # fmt: skip


@pytest.mark.e2e
def test_crash_during_checkpoint_write_leaves_previous_checkpoint_loadable(tmp_path):
    """A process that dies (os._exit, no cleanup) halfway through writing last.pt."""
    path = tmp_path / "last.pt"
    save_checkpoint(bare_checkpoint(torch.ones(3), 1), path)
    script = textwrap.dedent(f"""
        import math, os
        import torch
        import checkpoint

        def bare_checkpoint(weight, iter_num):
            return checkpoint.new_checkpoint(
                model={{"w": weight}}, model_args={{}}, optimizer=[], scaler={{}},
                iter_num=iter_num, best_val_loss=math.inf, eval_losses={{}}, config={{}},
                vocab=[], rng=[],
            )

        real_write_bytes = checkpoint.Path.write_bytes
        def dies_mid_write(self, data):
            real_write_bytes(self, data[: len(data) // 2])
            os._exit(3)  # the machine loses power here, half the bytes written
        checkpoint.Path.write_bytes = dies_mid_write
        state = bare_checkpoint(torch.zeros(1000), 2)
        checkpoint.save_checkpoint(state, checkpoint.Path({str(path)!r}))
    """)
    result = run([sys.executable, "-c", script], timeout=60)
    assert result.returncode == 3, result.stderr
    assert list(tmp_path.glob(".last.pt.*.tmp")), "the interrupted write should have left a tmp"
    survivor = load_checkpoint(path)
    assert survivor["iter_num"] == 1 and torch.equal(survivor["model"]["w"], torch.ones(3))


@pytest.mark.e2e
def test_corrupted_checkpoint_on_resume_is_a_clear_error(tiny_argv, tmp_path, capsys):
    assert train.main(tiny_argv("--max_iters", "20")) == 0
    last = tmp_path / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    capsys.readouterr()
    assert train.main(tiny_argv("--resume")) == 1
    err = capsys.readouterr().err
    assert "cannot read checkpoint" in err and err.count("\n") == 1


@pytest.mark.e2e
def test_resuming_from_best_never_rolls_back_a_later_last(tiny_argv, tmp_path, capsys):
    from checkpoint import BEST, LAST

    assert train.main(tiny_argv("--max_iters", "20", "--eval_interval", "5")) == 0
    run_dir = tmp_path / "run"
    best_iter = load_checkpoint(run_dir / BEST)["iter_num"]
    if best_iter == 20:  # make best.pt an earlier one, as after a run that overfits
        save_checkpoint({**load_checkpoint(run_dir / LAST), "iter_num": 10}, run_dir / BEST)
        best_iter = 10
    last_before = (run_dir / LAST).read_bytes()
    capsys.readouterr()
    assert train.main(tiny_argv("--resume", str(run_dir / BEST), "--max_iters", "25")) == 1
    err = capsys.readouterr().err
    assert f"would roll back {run_dir / LAST} (iteration 20)" in err and "--out_dir" in err
    assert (run_dir / LAST).read_bytes() == last_before
    new_dir = shlex.split(err.split("--out_dir ")[1])[0]  # the command it suggests
    assert (
        train.main(tiny_argv("--resume", str(run_dir / BEST), "--max_iters", "25", out=new_dir))
        == 0
    )
    assert load_checkpoint(Path(new_dir) / LAST)["iter_num"] == 25
    assert (run_dir / LAST).read_bytes() == last_before


@pytest.mark.e2e
def test_a_temporary_checkpoint_left_by_a_killed_writer_is_removed_at_the_next_start(
    tiny_argv, tmp_path
):
    assert train.main(tiny_argv("--max_iters", "5", "--eval_interval", "5")) == 0
    leftover = tmp_path / "run" / ".last.pt.99999.tmp"  # as SIGKILL mid-write leaves it
    leftover.write_bytes(b"half a checkpoint")
    assert train.main(tiny_argv("--resume", "--max_iters", "10")) == 0
    assert not leftover.exists()


@pytest.mark.e2e
def test_a_failure_between_the_two_checkpoint_writes_leaves_best_the_newer(
    tiny_argv, tmp_path, monkeypatch, capsys
):
    """A full disk (a fault injected into the write of last.pt, after best.pt) at the second
    evaluation: best.pt holds the newer, better model, readers get it, and the resumed run keeps
    its loss as the one to beat."""
    import checkpoint as checkpoint_files

    real_write = checkpoint_files.write_atomic
    state = {"evaluations": 0}

    def disk_full_at_the_second_last_pt(path, write):
        if path.name == "last.pt":
            state["evaluations"] += 1
            if state["evaluations"] == 2:  # at iteration 10
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, write)

    monkeypatch.setattr(checkpoint_files, "write_atomic", disk_full_at_the_second_last_pt)
    assert train.main(tiny_argv("--max_iters", "20", "--eval_interval", "5")) == 1
    assert "disk full" in capsys.readouterr().err
    monkeypatch.setattr(checkpoint_files, "write_atomic", real_write)
    run_dir = tmp_path / "run"
    best, last = load_checkpoint(run_dir / "best.pt"), load_checkpoint(run_dir / "last.pt")
    assert (best["iter_num"], last["iter_num"]) == (10, 5)
    assert best["best_val_loss"] < last["best_val_loss"]
    assert train.main(tiny_argv("--resume")) == 0
    assert "newer than" in capsys.readouterr().out
    best = load_checkpoint(run_dir / "best.pt")
    assert best["best_val_loss"] == load_checkpoint(run_dir / "last.pt")["best_val_loss"]


@pytest.mark.e2e
def test_weights_that_do_not_fit_the_model_are_one_line_on_resume(
    tiny_argv, tiny_run, tmp_path, capsys
):
    checkpoint = load_checkpoint(tiny_run / "last.pt")
    del checkpoint["model"]["transformer.ln_f.weight"]
    run_dir = tmp_path / "run"
    save_checkpoint(checkpoint, run_dir / "last.pt")
    assert train.main(tiny_argv("--resume")) == 1
    err = capsys.readouterr().err
    assert "do not fit" in err and "ln_f.weight" in err and err.count("\n") == 1


FIXTURE_V1 = ROOT / "tests" / "fixtures" / "checkpoint_v1.pt"  # written by train.py at 567c75e


@pytest.mark.e2e
def test_a_checkpoint_of_the_previous_format_samples_and_resumes(tiny_argv, tmp_path):
    """tests/fixtures/checkpoint_v1.pt was written by the code before format 2 (a 1-layer,
    16-channel tiny.yaml run with Muon, 4 iterations). It loads, upgraded (its floor and Muon's
    rate, rates then, become ratios of learning_rate); it resumes on the same schedule."""
    from checkpoint import CHECKPOINT_VERSION, load_checkpoint, load_model

    raw = torch.load(FIXTURE_V1, weights_only=True)
    assert raw["format_version"] == 1
    upgraded = load_checkpoint(FIXTURE_V1)
    assert upgraded["format_version"] == CHECKPOINT_VERSION == 3
    old, new = raw["config"], upgraded["config"]
    assert "min_lr" not in new and "muon_lr" not in new
    assert new["min_lr_ratio"] * new["learning_rate"] == pytest.approx(old["min_lr"])
    assert new["muon_lr_ratio"] * new["learning_rate"] == pytest.approx(old["muon_lr"])
    model, tokenizer = load_model(FIXTURE_V1)
    assert tokenizer.vocab_size == 65 and model.config.n_embd == 16
    # the layout before Muon: one optimizer's state dict, no eval_losses
    older = {**raw, "optimizer": raw["optimizer"][0]}
    del older["eval_losses"]
    older_path = tmp_path / "older.pt"
    torch.save(older, older_path)
    (state,) = load_checkpoint(older_path)["optimizer"]
    assert state["param_groups"] == raw["optimizer"][0]["param_groups"]
    assert load_checkpoint(older_path)["eval_losses"] == {}
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "last.pt").write_bytes(FIXTURE_V1.read_bytes())
    assert train.main(tiny_argv("--resume", "--max_iters", "6")) == 0
    assert load_checkpoint(run_dir / "last.pt")["iter_num"] == 6


@pytest.mark.e2e
def test_a_run_stopped_between_its_first_two_writes_resumes_from_best(tiny_argv, tmp_path):
    """A full disk right after the first best.pt (written before last.pt): best.pt continues."""
    assert train.main(tiny_argv("--max_iters", "5", "--eval_interval", "5")) == 0
    (tmp_path / "run" / "last.pt").unlink()
    assert train.main(tiny_argv("--resume", "--max_iters", "10")) == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["iter_num"] == 10
