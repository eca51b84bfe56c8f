"""Nothing from outside can touch a user's files: a checkpoint is data, never a command. Real
checkpoint files, altered as someone else's could be, given to the real scripts."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from helpers import run as run_process

import evaluate
import sample
import train
from checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture
def planted(tiny_run, tmp_path):
    """tiny_run's checkpoint, its config pointing at a file of the user's and a data_dir of its
    choosing: what a checkpoint from anywhere may say."""
    secret = tmp_path / "secret.txt"
    secret.write_text("the user's own words, not to be read or copied\n" * 20)
    target = tmp_path / "somewhere"
    checkpoint = load_checkpoint(tiny_run / "last.pt")
    checkpoint["config"].update(dataset="text", data_path=str(secret), data_dir=str(target))
    run = tmp_path / "planted"
    save_checkpoint(checkpoint, run / "last.pt")
    return run, secret, target


def test_evaluate_never_reads_or_prepares_the_data_a_checkpoint_names(planted, capsys):
    run, _, target = planted
    assert evaluate.main(["--ckpt", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give that text as --data_path" in err
    assert not target.exists()  # nothing prepared, nothing written


def test_a_resume_takes_data_paths_only_from_the_command_line(planted, capsys):
    run, secret, target = planted
    assert train.main(["--resume", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"add --data_path {secret}" in err
    assert not target.exists()


def altered(tiny_run, tmp_path, change) -> str:
    checkpoint = load_checkpoint(tiny_run / "last.pt")
    change(checkpoint)
    path = tmp_path / "altered.pt"
    torch.save(checkpoint, path)  # as anyone could write it, not through save_checkpoint
    return str(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(format_version="2"), "format_version is '2'"),
        (lambda c: c.update(config=["dataset"]), "config must be a mapping"),
        (lambda c: c.update(model=[1, 2]), "model must be a state dict"),
        (lambda c: c.update(vocab=c["vocab"][:-1]), "vocabulary has 64 characters, its model 65"),
        (lambda c: c.update(vocab=["ab", *c["vocab"][1:]]), "vocab must be a list of distinct"),
        (lambda c: c["model_args"].update(n_layer=10**9), "more than the"),
        (lambda c: c["model_args"].update(n_layer="2"), "usable model"),
    ],
)
@pytest.mark.parametrize("script", [sample, evaluate])
def test_a_malformed_checkpoint_is_one_line_and_exit_1(
    tiny_run, tmp_path, capsys, script, change, message
):
    path = altered(tiny_run, tmp_path, change)
    assert (
        script.main(
            ["--ckpt", path, "--device", "cpu", "--text_file", __file__]
            if script is evaluate
            else ["--ckpt", path, "--device", "cpu"]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


# ---- run directories: no link followed, no user file overwritten, no run lost ---------------


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
    from infra.files import LinkError, write_atomic

    elsewhere = tmp_path / "elsewhere.pt"
    elsewhere.write_bytes(b"not the run's")
    (tmp_path / "last.pt").symlink_to(elsewhere)
    with pytest.raises(LinkError, match=r"last\.pt is a link"):
        write_atomic(tmp_path / "last.pt", lambda tmp: tmp.write_bytes(b"new"))
    assert elsewhere.read_bytes() == b"not the run's"
    # a link planted under the temporary's name is removed, not followed
    planted = tmp_path / "planted.txt"
    planted.write_text("mine")
    (tmp_path / f".new.pt.{os.getpid()}.tmp").symlink_to(planted)
    write_atomic(tmp_path / "new.pt", lambda tmp: tmp.write_bytes(b"new"))
    assert planted.read_text() == "mine" and (tmp_path / "new.pt").read_bytes() == b"new"


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


def test_an_overwrite_whose_new_run_fails_before_a_checkpoint_gives_the_old_run_back(
    tiny_argv, tmp_path, monkeypatch, capsys
):
    from training.trainer import Trainer

    assert train.main(tiny_argv("--max_iters", "10", "--eval_interval", "5")) == 0
    run = tmp_path / "run"
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}

    def out_of_memory(self, batches):
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


def test_an_overwrite_killed_before_its_first_checkpoint_is_undone_at_the_next_start(
    tiny_argv, tmp_path
):
    from test_train import start_training

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
