"""A run directory belongs to its run: never overwritten silently, never written by a resume of
another run, locked while a run lives, left as it was by a run that fails, never written through
a link, and a user file in it never replaced."""

from __future__ import annotations

import errno
import os
import sys

import pytest
import torch
from helpers import run, start_training
from helpers import run as run_process

import train
from checkpoint import load_checkpoint
from infra.errors import RunDirError
from training.command_line import parse_command_line


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
        train.train(**parse_command_line(tiny_argv("--max_iters", "20")))
    assert (tmp_path / "run" / "projector" / "00020.tsv").is_file()
    (tmp_path / "run" / "notes.txt").write_text("the user's own")
    assert train.main(tiny_argv("--max_iters", "20", "--overwrite", "--seed", "7")) == 0
    assert (tmp_path / "run" / "last.pt").read_bytes() != before
    # the old curves are gone: one event file, the new run's
    assert len(list((tmp_path / "run").glob("events.out.tfevents.*"))) == 1
    # the new run draws no embedding (--inspect false): the old run's is gone, not shown as its
    assert not (tmp_path / "run" / "projector").exists()
    assert not (tmp_path / "run" / "projector_config.pbtxt").exists()
    assert (tmp_path / "run" / "notes.txt").read_text() == "the user's own"


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
        # its first checkpoint (iteration 5) is written in the background, on a busy machine long
        # after the line start_training waited for; the evaluation at 10 waits for it, so by
        # the log line at 15 it is on disk
        for line in owner.stdout:
            if (run_dir / "last.pt").exists() or line.startswith("iter 15:"):
                break
        assert (run_dir / "last.pt").exists()
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
def test_command_line_errors_print_no_traceback(tiny_argv):
    """The real process: a config mistake is one stderr line and exit code 2, and nothing else."""
    result = run([sys.executable, "train.py", *tiny_argv(), "--n_embd", "33"], timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "n_embd" in result.stderr
    assert result.stdout == ""


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


# ---- no link followed, no user file overwritten, no run lost -------------------------------


@pytest.mark.e2e
def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(
    tiny_argv, tmp_path, capsys
):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(target)
    assert train.main(tiny_argv("--max_iters", "5")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".lock is a link" in err
    assert target.read_text() == "keep me"


@pytest.mark.e2e
def test_overwrite_never_deletes_through_a_linked_folder(tiny_argv, tmp_path, capsys):
    assert train.main(tiny_argv("--max_iters", "5", "--eval_interval", "5")) == 0
    data = tmp_path / "my_data"
    data.mkdir()
    (data / "table.tsv").write_text("the user's table")
    run = tmp_path / "run"
    (run / "projector").mkdir(exist_ok=True)
    for path in (run / "projector").iterdir():
        path.unlink()
    (run / "projector").rmdir()
    (run / "projector").symlink_to(data)
    capsys.readouterr()
    assert train.main(tiny_argv("--max_iters", "5", "--overwrite")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "projector is a link" in err
    assert (data / "table.tsv").read_text() == "the user's table"


def test_a_checkpoint_path_that_is_a_link_is_never_written_through(tmp_path):
    from infra.errors import RunDirError
    from infra.files import write_atomic

    elsewhere = tmp_path / "elsewhere.pt"
    elsewhere.write_bytes(b"not the run's")
    (tmp_path / "last.pt").symlink_to(elsewhere)
    with pytest.raises(RunDirError, match=r"last\.pt is a link"):
        write_atomic(tmp_path / "last.pt", lambda tmp: tmp.write_bytes(b"new"))
    assert elsewhere.read_bytes() == b"not the run's"
    # a link planted under the temporary's name is removed, not followed
    planted = tmp_path / "planted.txt"
    planted.write_text("mine")
    (tmp_path / f".new.pt.{os.getpid()}.tmp").symlink_to(planted)
    write_atomic(tmp_path / "new.pt", lambda tmp: tmp.write_bytes(b"new"))
    assert planted.read_text() == "mine" and (tmp_path / "new.pt").read_bytes() == b"new"


@pytest.mark.e2e
def test_a_config_yaml_of_the_users_is_never_overwritten(tiny_argv, tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("my: own settings\n")
    assert train.main(tiny_argv("--max_iters", "5")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not one train.py wrote" in err
    assert (run / "config.yaml").read_text() == "my: own settings\n"
    # nor by a resume into a directory of the user's
    assert train.main(tiny_argv("--resume", str(tiny_run), "--out_dir", str(run))) == 1
    assert (run / "config.yaml").read_text() == "my: own settings\n"


@pytest.mark.e2e
def test_an_overwrite_whose_new_run_fails_before_a_checkpoint_gives_the_old_run_back(
    tiny_argv, tmp_path, monkeypatch, capsys
):
    from training.trainer import Trainer

    assert train.main(tiny_argv("--max_iters", "10", "--eval_interval", "5")) == 0
    run = tmp_path / "run"
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}

    def out_of_memory(self):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate")

    monkeypatch.setattr(Trainer, "train_step", out_of_memory)
    capsys.readouterr()
    assert train.main(tiny_argv("--max_iters", "10", "--overwrite", "--seed", "9")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out of cpu memory at iteration 0" in err
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k.name != ".lock"} == {
        k: v for k, v in before.items() if k.name != ".lock"
    }  # every file of the old run, as it was; nothing of the new one


@pytest.mark.e2e
def test_an_overwrite_killed_before_its_first_checkpoint_is_undone_at_the_next_start(
    tiny_argv, tmp_path
):
    assert train.main(tiny_argv("--max_iters", "10", "--eval_interval", "5")) == 0
    run = tmp_path / "run"
    before = (run / "last.pt").read_bytes()
    argv = tiny_argv("--max_iters", "100000", "--eval_interval", "100000", "--log_interval", "5",
                     "--overwrite")  # fmt: skip
    process = start_training(argv)  # past iteration 5: the old run is set aside
    assert not (run / "last.pt").exists()
    process.kill()  # SIGKILL: nothing of the process's own cleanup runs
    process.communicate(timeout=60)
    result = run_process([sys.executable, "train.py", *tiny_argv("--max_iters", "10")])
    assert result.returncode == 1 and "already holds a run" in result.stderr
    assert "restored the run an --overwrite set aside" in result.stdout
    assert (run / "last.pt").read_bytes() == before
