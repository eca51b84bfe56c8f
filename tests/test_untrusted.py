"""Nothing from outside can touch a user's files: a checkpoint is data, never a command. Real
checkpoint files, altered as someone else's could be, given to the real scripts."""

from __future__ import annotations

import pytest
import torch

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
