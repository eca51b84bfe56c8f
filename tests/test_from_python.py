"""Training from Python: train() is the command line's own run, hooks see every step and can stop
it, an interrupt returns the run so far, and runs that share a process share no random stream."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import torch
from helpers import run

import train
from checkpoint import load_checkpoint
from infra.errors import ConfigError, RunDirError
from viz import LivePlot

pytestmark = pytest.mark.e2e

# 20 iterations of tiny.yaml with dropout on (so the dropout stream is exercised), evaluated every
# 5 and logged at every step; the exact loss at the end over the first 4,000 characters
SHORT = dict(max_iters=20, eval_interval=5, loss_interval=0, log_interval=1, dropout=0.1,
             inspect=False, tensorboard=False, device="cpu", exact_max_chars=4000)  # fmt: skip


def settings_in(folder: Path, shakespeare_path: Path, data_dir: Path):
    """train()'s keyword arguments for a SHORT tiny.yaml run into folder / name."""

    def make(name: str, **more) -> dict:
        paths = dict(data_path=str(shakespeare_path), data_dir=str(data_dir))
        return {"config": "tiny", "out_dir": str(folder / name), **paths, **SHORT, **more}

    return make


@pytest.fixture
def settings(shakespeare_path, shakespeare, tmp_path):
    return settings_in(tmp_path, shakespeare_path, shakespeare.data_dir)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "last.pt")["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def straight(tmp_path_factory, shakespeare_path, shakespeare) -> train.Run:
    """SHORT's 20 iterations in one go: the reference for the runs that stop and resume."""
    folder = tmp_path_factory.mktemp("straight")
    return train.train(**settings_in(folder, shakespeare_path, shakespeare.data_dir)("run"))


def test_train_from_python_is_the_command_lines_run(settings, tmp_path):
    """The same config and seed: the same losses and weights from train() as from train.py."""
    python = train.train(**settings("python"))
    argv = [f"--{key}={value}" for key, value in settings("cli").items()]
    assert train.main(argv) == 0
    assert_same_weights(weights(tmp_path / "python"), weights(tmp_path / "cli"))
    assert python.iter_num == 20 and python.stopped is None
    assert python.best_val_loss == load_checkpoint(tmp_path / "cli" / "best.pt")["best_val_loss"]
    evaluations = [p for p in python.history if "val_loss" in p]
    assert [p["iter"] for p in evaluations] == [0, 5, 10, 15, 20]
    assert [p["iter"] for p in python.history if "batch_loss" in p] == list(range(1, 21))
    assert abs(python.val_loss_exact - evaluations[-1]["val_loss"]) < 0.2


def test_runs_in_one_process_equal_runs_in_their_own_and_leave_the_global_rng_alone(
    settings, tmp_path
):
    """Two runs of different seeds in one process, in either order, give exactly what each gives
    in a process of its own; the caller's global random state is as it was."""
    torch.manual_seed(123)
    before = torch.get_rng_state()
    train.train(**settings("a_first", seed=1))
    train.train(**settings("b_second", seed=2))
    train.train(**settings("b_first", seed=2))
    train.train(**settings("a_second", seed=1))
    assert torch.equal(torch.get_rng_state(), before)
    assert_same_weights(weights(tmp_path / "a_first"), weights(tmp_path / "a_second"))
    assert_same_weights(weights(tmp_path / "b_first"), weights(tmp_path / "b_second"))
    argv = [f"--{key}={value}" for key, value in settings("b_alone", seed=2).items()]
    threads = {"OMP_NUM_THREADS": str(torch.get_num_threads())}  # the same order of sums
    result = run([sys.executable, "train.py", *argv], env=threads)
    assert result.returncode == 0, result.stderr
    assert_same_weights(weights(tmp_path / "b_alone"), weights(tmp_path / "b_second"))


def test_a_hook_sees_every_step_in_order_and_reading_the_step_changes_nothing(
    settings, straight, tmp_path
):
    seen = []

    def hook(step: train.Step) -> None:
        seen.append((step.step, step.evaluation is not None, step.lr, step.run.iter_num))

    hooked = train.train(**settings("hooked"), hooks=[hook])
    assert [s for s, *_ in seen] == list(range(1, 21))
    assert [s for s, evaluated, *_ in seen if evaluated] == [5, 10, 15, 20]
    assert all(lr > 0 for *_, lr, _ in seen) and all(s == n for s, _, _, n in seen)
    assert_same_weights(weights(tmp_path / "hooked"), weights(straight.out_dir))

    def recorded(history: list[dict]) -> list[dict]:  # all but the speed, which varies
        return [{k: v for k, v in p.items() if k != "tokens_per_sec"} for p in history]

    assert recorded(hooked.history) == recorded(straight.history)


def test_stop_training_saves_last_and_the_run_resumes_exactly(settings, straight, tmp_path):
    def stop_at_7(step: train.Step) -> None:
        if step.step == 7:
            raise train.StopTraining

    stopped = train.train(**settings("stopped"), hooks=[stop_at_7])
    assert (stopped.stopped, stopped.iter_num) == ("StopTraining", 7)
    assert stopped.val_loss_exact is None
    assert load_checkpoint(tmp_path / "stopped" / "last.pt")["iter_num"] == 7
    resumed = train.train(resume=tmp_path / "stopped", **paths_of(settings("stopped")))
    assert resumed.iter_num == 20 and resumed.stopped is None
    assert_same_weights(weights(tmp_path / "stopped"), weights(straight.out_dir))


def test_an_interrupt_saves_last_and_returns_the_partial_run(settings, straight, tmp_path, capsys):
    """SIGINT, as a notebook's interrupt sends it, during step 7: last.pt is saved at the next log
    point, the run returned with a line saying how to continue, and the run resumes exactly."""

    def interrupt_at_7(step: train.Step) -> None:
        if step.step == 7:
            os.kill(os.getpid(), signal.SIGINT)

    partial = train.train(**settings("interrupted"), hooks=[interrupt_at_7])
    assert (partial.stopped, partial.signal, partial.iter_num) == ("SIGINT", signal.SIGINT, 8)
    err = capsys.readouterr().err
    assert "stopped by SIGINT at iteration 8" in err and "train(resume=" in err
    assert load_checkpoint(tmp_path / "interrupted" / "last.pt")["iter_num"] == 8
    train.train(resume=tmp_path / "interrupted", **paths_of(settings("interrupted")))
    assert_same_weights(weights(tmp_path / "interrupted"), weights(straight.out_dir))


def test_an_exception_in_a_hook_saves_last_and_goes_on_up_as_it_was(settings, tmp_path):
    def broken(step: train.Step) -> None:
        if step.step == 6:
            raise ZeroDivisionError("the learner's own bug")

    with pytest.raises(ZeroDivisionError, match="the learner's own bug"):
        train.train(**settings("broken"), hooks=[broken])
    assert load_checkpoint(tmp_path / "broken" / "last.pt")["iter_num"] == 6


def test_mistakes_from_python_are_config_errors_raised_before_any_work(settings, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'lerning_rate' \(did you mean"):
        train.train(**settings("typo"), lerning_rate=1e-3)
    with pytest.raises(ConfigError, match="n_embd: must be divisible by n_head"):
        train.train(**{**settings("shape"), "n_embd": 33})
    with pytest.raises(ConfigError, match="max_iters expects an integer"):
        train.train(**{**settings("type"), "max_iters": "many"})
    assert not (tmp_path / "typo").exists() and not (tmp_path / "shape").exists()


def test_a_run_directory_belongs_to_its_run_from_python_too(settings, tmp_path):
    train.train(**settings("taken", max_iters=5))
    with pytest.raises(RunDirError, match="already holds a run"):
        train.train(**settings("taken", max_iters=5))
    again = train.train(**settings("taken", max_iters=6), overwrite=True)
    assert again.iter_num == 6 and load_checkpoint(tmp_path / "taken")["iter_num"] == 6


def test_the_live_plot_writes_its_figure_outside_a_notebook(settings, tmp_path):
    picture = tmp_path / "curves.png"
    plot = LivePlot(every=2, path=picture)
    train.train(**settings("plotted"), hooks=[plot])
    train.train(**settings("plotted_too", learning_rate=1e-2), hooks=[plot])
    assert picture.read_bytes().startswith(b"\x89PNG")
    assert len(plot.runs) == 2  # both runs, one figure
    assert [s for s, _ in plot.runs[str(tmp_path / "plotted")]["batch"]] == list(range(2, 21, 2))


def paths_of(settings: dict) -> dict:
    """What a resume takes from the caller, never from the checkpoint: where the data is."""
    return {key: settings[key] for key in ("data_path", "data_dir")}


@pytest.mark.parametrize("attn_impl", ["sdpa", "math"])
def test_the_same_seed_gives_the_same_numbers_with_the_background_writer_busy(
    settings, tmp_path, attn_impl
):
    """fp32 on the CPU, either attention kernel: two runs of one seed end bitwise alike, while
    the background thread writes checkpoints and draws TensorBoard's views beside every few
    steps (docs/performance.md says what bf16 under oneDNN does not promise)."""
    busy = dict(dtype="float32", attn_impl=attn_impl, inspect=True, tensorboard=True,
                eval_interval=4, loss_interval=2)  # fmt: skip
    for name in ("once", "again"):
        train.train(**{**settings(name), **busy})
    assert_same_weights(weights(tmp_path / "once"), weights(tmp_path / "again"))
