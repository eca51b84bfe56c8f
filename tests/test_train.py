"""Training end to end on configs/tiny.yaml: TensorBoard files read back by TensorBoard's own
reader, exact resume, checkpoints that survive a crash, signals, and the user's mistakes."""

from __future__ import annotations

import errno
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import ROOT, flags, run, scalar_points, tensorboard_runs

import train
from checkpoint import load_checkpoint, save_checkpoint
from infra.device import Runtime
from infra.errors import RunDirError
from training.evaluation import estimate_loss
from training.stopping import NonFiniteLoss
from training.trainer import Trainer


@pytest.mark.e2e
def test_tiny_run_writes_tensorboard_events_that_tensorboard_reads(tiny_argv, tmp_path, capsys):
    assert train.main(tiny_argv()) == 0
    run_dir = tmp_path / "run"
    runs = tensorboard_runs(run_dir)
    assert sorted(runs.Runs()) == [".", "train", "val", "val_exact"]  # no stray runs
    tags = runs.GetAccumulator(".").Tags()["tensors"]
    for tag in ("optimizer/lr", "optimizer/grad_norm", "speed/tokens_per_sec"):
        assert tag in tags, tag
    assert "sample/text_summary" in tags
    assert "_hparams_/experiment" in runs.GetAccumulator(".").PluginTagToContent("hparams")
    val = scalar_points(run_dir, "val", "loss")
    assert list(val) == [0, 20, 40, 60]
    assert all(math.isfinite(v) for v in val.values())
    assert val[60] < val[20] < val[0]
    assert abs(val[0] - math.log(65)) < 0.1
    assert {"last.pt", "best.pt", "config.yaml"} <= {p.name for p in run_dir.iterdir()}
    printed = capsys.readouterr().out
    assert "tokens per iteration: 1 micro-step x 1 process x 8 batch x 32 block = 256" in printed
    assert "eager (auto: eager on cpu" in printed  # compile: auto never compiles on a CPU
    assert "n_layer: 2" in printed  # the resolved config is printed ...
    assert "n_layer: 2" in (run_dir / "config.yaml").read_text()  # ... and saved


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
    for sub_run, tag in (("train", "loss/batch"), ("val", "loss"), (".", "optimizer/lr")):
        assert scalar_points(a, sub_run, tag) == scalar_points(b, sub_run, tag), (sub_run, tag)


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

    def crash_at_13(self, batches):
        if self.iter_num == 13:
            raise RuntimeError("simulated crash")
        return original_step(self, batches)

    monkeypatch.setattr(Trainer, "train_step", crash_at_13)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train.train(tiny_argv(*RESUME_RUN, out="crashed"))
    monkeypatch.setattr(Trainer, "train_step", original_step)
    assert load_checkpoint(tmp_path / "crashed" / "last.pt")["iter_num"] == 10
    wait_for_the_next_second()
    assert train.main(tiny_argv("--resume", out="crashed")) == 0
    assert_same_run(straight_runs["adamw"], tmp_path / "crashed")


@pytest.mark.e2e
def test_existing_run_is_never_silently_overwritten(tiny_argv, tmp_path, capsys):
    assert train.main(tiny_argv("--max_iters", "20", "--inspect", "true")) == 0
    before = (tmp_path / "run" / "last.pt").read_bytes()
    capsys.readouterr()
    assert train.main(tiny_argv("--max_iters", "20")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err and "--overwrite" in err
    assert (tmp_path / "run" / "last.pt").read_bytes() == before
    with pytest.raises(RunDirError):
        train.train(tiny_argv("--max_iters", "20"))
    assert (tmp_path / "run" / "projector" / "00020.tsv").is_file()
    (tmp_path / "run" / "notes.txt").write_text("the user's own")
    assert train.main(tiny_argv("--max_iters", "20", "--overwrite", "--seed", "7")) == 0
    assert (tmp_path / "run" / "last.pt").read_bytes() != before
    for sub_run in ("", "train", "val", "val_exact"):  # the old curves are gone, every one
        assert len(list((tmp_path / "run" / sub_run).glob("events.out.tfevents.*"))) == 1, sub_run
    # the new run draws no embedding (--inspect false): the old run's is gone, not shown as its
    assert not (tmp_path / "run" / "projector").exists()
    assert not (tmp_path / "run" / "projector_config.pbtxt").exists()
    assert (tmp_path / "run" / "notes.txt").read_text() == "the user's own"


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


def start_training(argv: list[str]) -> subprocess.Popen:
    """train.py in its own process, returned once it has logged a training step."""
    process = subprocess.Popen(
        [sys.executable, "train.py", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    for line in process.stdout:
        if line.startswith("iter 5:"):
            return process
    raise AssertionError(f"train.py ended before training: {process.communicate()[1]}")


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
    pasted = shlex.split(err.split("Continue with: ")[1])
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
        train.train(tiny_argv("--log_interval", "1"))
    calls["n"] = 0
    assert train.main(tiny_argv("--log_interval", "1", "--overwrite")) == 1
    good = load_checkpoint(tmp_path / "run" / "last.pt")
    assert good["iter_num"] == 20
    assert all(torch.isfinite(t).all() for t in good["model"].values())


@pytest.mark.e2e
@pytest.mark.parametrize(
    "extra, message",
    [
        (("--device", "cuda"), "CUDA is not available"),
        (("--data_path", "/no/such/input.txt"), "does not exist"),
        (("--resume", "/no/such/run"), "nothing to resume"),
    ],
)
def test_user_mistakes_at_start_are_one_line_and_exit_1(tiny_argv, capsys, extra, message):
    if extra[1] == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert train.main([*tiny_argv(), *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


TOO_LONG = "x" * 300 + "/run"


@pytest.mark.e2e
@pytest.mark.parametrize(
    "where, message",
    [
        ("a_file", "out_dir {tmp}/a_file is a file, not a directory"),
        ("a_file/run", "its parent {tmp}/a_file is a file, not a directory"),
        # a name longer than any file system allows: mkdir fails on every OS, in its own words
        (TOO_LONG, f"cannot create out_dir {{tmp}}/{TOO_LONG}: {os.strerror(errno.ENAMETOOLONG)}"),
    ],
)
def test_an_out_dir_that_cannot_be_a_directory_is_one_line(
    tiny_argv, tmp_path, capsys, where, message
):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert train.main([*tiny_argv(), "--out_dir", str(tmp_path / where)]) == 1
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and err.count("\n") == 1
    assert blocker.read_text() == "not a directory"


@pytest.mark.e2e
def test_a_live_run_owns_its_directory_and_a_killed_one_does_not_block_the_next(
    tiny_argv, tmp_path
):
    """Real processes: a second train.py on a live run's out_dir (even with --overwrite) refuses
    at once, naming the directory and the owner's pid, and changes nothing; once the owner is
    killed with SIGKILL (no clean-up at all), the next run takes the directory over."""
    forever = tiny_argv("--max_iters", "100000", "--eval_interval", "5", "--log_interval", "5")
    owner = start_training(forever)
    run_dir = tmp_path / "run"
    try:
        config_before = (run_dir / "config.yaml").read_bytes()
        second = run(
            [sys.executable, "train.py", *tiny_argv("--overwrite", "--seed", "2")], timeout=60
        )
        assert second.returncode == 1
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert f"{run_dir} is in use" in second.stderr and f"pid {owner.pid}" in second.stderr
        assert (run_dir / "config.yaml").read_bytes() == config_before
        assert (run_dir / "last.pt").exists()  # --overwrite deleted nothing
    finally:
        owner.kill()  # SIGKILL: the lock file stays behind, the kernel drops the lock
        owner.communicate(timeout=60)
    assert (run_dir / ".lock").exists()
    assert train.main(tiny_argv("--resume", "--max_iters", "10")) == 0


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
def test_command_line_errors_print_no_traceback(tiny_argv):
    """The real process: a config mistake is one stderr line and exit code 2, and nothing else."""
    result = run([sys.executable, "train.py", *tiny_argv(), "--n_embd", "33"], timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "n_embd" in result.stderr
    assert result.stdout == ""


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
    accumulated.train_step(iter([(x[:4], y[:4]), (x[4:], y[4:])]))
    single.train_step(iter([(x, y)]))
    for (name, a), b in zip(
        accumulated.model.named_parameters(), single.model.parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)


def test_validation_windows_are_the_same_at_every_evaluation(tiny_config, shakespeare):
    config, runtime = tiny_config(), Runtime(torch.device("cpu"), torch.float32)
    model = Trainer(config, runtime, shakespeare).model
    first = estimate_loss(model, model, shakespeare, config, runtime)
    assert first == estimate_loss(model, model, shakespeare, config, runtime)
    assert estimate_loss(model, model, shakespeare, replace(config, seed=7), runtime) != first


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
    tiny_config, shakespeare, capsys
):
    from training.console import Console

    def fit(interactive: bool) -> tuple[str, str]:
        config = tiny_config(max_iters=20, eval_interval=10, log_interval=5)
        runtime = Runtime(torch.device("cpu"), torch.float32)
        train.loop(Trainer(config, runtime, shakespeare, console=Console(interactive=interactive)))
        captured = capsys.readouterr()
        return captured.out, captured.err

    out, err = fit(interactive=True)
    assert "100%|" in err and "20/20" in err and "tok/s" in err  # the bar, with its postfix
    assert "iter 10: train loss" in out  # evaluations still print, above the bar
    assert "iter 5: loss" not in out  # step lines go to the bar instead
    out, err = fit(interactive=False)
    assert "%|" not in err
    assert "iter 5: loss" in out and "iter 10: train loss" in out
    assert re.search(r"iter 5: loss .* tok/s, \d\d:\d\d left", out)  # the time left, per line


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
        assert list(scalar_points(tmp_path / "run", split, "loss")) == [0, 4, 8, 10, 12, 16, 20]
    assert saved == [10, 20]


@pytest.mark.e2e
def test_a_run_that_fails_before_training_leaves_its_out_dir_as_it_was(tiny_argv, tmp_path):
    """A missing data file: no out_dir is created for a new run, and --overwrite of an existing
    run deletes nothing before the new run's data and block_size have been checked."""
    missing = ("--dataset", "text", "--data_path", str(tmp_path / "typo.txt"))
    assert train.main(tiny_argv(*missing, out="never")) == 1
    assert not (tmp_path / "never").exists()
    assert train.main(tiny_argv("--max_iters", "5", "--eval_interval", "5")) == 0
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert train.main(tiny_argv(*missing, "--overwrite")) == 1
    assert train.main(tiny_argv("--overwrite", "--block_size", "200000")) == 1  # longer than val
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before


@pytest.mark.e2e
def test_a_resume_never_writes_into_another_run(tiny_argv, tmp_path, capsys):
    assert train.main(tiny_argv("--max_iters", "5", "--eval_interval", "5", out="a")) == 0
    assert train.main(tiny_argv("--max_iters", "5", "--seed", "7", out="b")) == 0
    b_before = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir() if p.is_file()}
    capsys.readouterr()
    argv = tiny_argv("--resume", str(tmp_path / "a"), "--max_iters", "10", out="b")
    assert train.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds another run" in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir() if p.is_file()} == b_before
    # into an empty directory it is a new run there, and a continues untouched
    argv = tiny_argv("--resume", str(tmp_path / "a"), "--max_iters", "10", out="c")
    assert train.main(argv) == 0
    assert load_checkpoint(tmp_path / "c" / "last.pt")["iter_num"] == 10
    assert load_checkpoint(tmp_path / "a" / "last.pt")["iter_num"] == 5


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


@pytest.mark.e2e
def test_ctrl_c_in_the_final_exact_pass_says_what_was_saved(tiny_argv, monkeypatch, capsys):

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "exact_loss", interrupted)
    assert train.main(tiny_argv("--max_iters", "20")) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "last.pt holds iteration 20" in err


def test_a_tensorboard_write_that_fails_is_one_warning_and_training_goes_on(tmp_path, capsys):
    from training.logger import TensorBoardLogger

    logger = TensorBoardLogger(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "events"))

    logger.writers[""].file_writer.add_summary = disk_full
    logger.scalar("lr", 1.0, 0)
    logger.scalar("loss/val", 0.5, 1)  # no second warning, no exception
    logger.flush()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "disk full" in err and "training goes on" in err
    assert not logger.active


FIXTURE_V1 = ROOT / "tests" / "fixtures" / "checkpoint_v1.pt"  # written by train.py at 567c75e


@pytest.mark.e2e
def test_a_checkpoint_of_the_previous_format_samples_and_resumes(tiny_argv, tmp_path):
    """tests/fixtures/checkpoint_v1.pt was written by the code before format 2 (a 1-layer,
    16-channel tiny.yaml run with Muon, 4 iterations). It loads, upgraded; it resumes."""
    from checkpoint import CHECKPOINT_VERSION, load_checkpoint, load_model

    raw = torch.load(FIXTURE_V1, weights_only=True)
    assert raw["format_version"] == 1
    upgraded = load_checkpoint(FIXTURE_V1)
    assert upgraded["format_version"] == CHECKPOINT_VERSION == 2
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
