"""Nothing from outside can touch a user's files: a checkpoint is data, never a command. Real
checkpoint files, altered as someone else's could be, given to the real scripts."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from helpers import ROOT
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


@pytest.mark.e2e
def test_evaluate_never_reads_or_prepares_the_data_a_checkpoint_names(planted, capsys):
    run, _, target = planted
    assert evaluate.main(["--ckpt", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give that text as --data_path" in err
    assert not target.exists()  # nothing prepared, nothing written


@pytest.mark.e2e
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


@pytest.mark.e2e
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
    from infra.errors import LinkError
    from infra.files import write_atomic

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


@pytest.mark.e2e
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


# ---- prepared data: keyed by what it is, prepared once at a time, never into a user's folder


LOAD = (
    "import sys; from data import load_dataset; d = load_dataset('text', sys.argv[1], "
    "sys.argv[2] if len(sys.argv) > 2 else None); "
    "print(''.join(d.tokenizer.chars), d.train.numel() + d.val.numel())"
)


def test_two_texts_of_one_name_are_prepared_apart(tmp_path):
    from data import load_dataset

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "input.txt").write_text("abcabcabc" * 50)
    (tmp_path / "b" / "input.txt").write_text("xyz xyz\n" * 40)
    a = load_dataset("text", tmp_path / "a" / "input.txt")
    b = load_dataset("text", tmp_path / "b" / "input.txt")
    assert a.data_dir != b.data_dir and a.data_dir.name.startswith("input-")
    assert a.tokenizer.chars == ["a", "b", "c"] and b.tokenizer.chars == ["\n", " ", "x", "y", "z"]
    for data in (a, b):
        for name in ("train.bin", "val.bin", "vocab.json", "meta.json", ".lock"):
            (data.data_dir / name).unlink()
        data.data_dir.rmdir()


@pytest.mark.e2e
def test_processes_preparing_one_folder_at_once_each_get_their_own_text(tmp_path):
    """Six processes start together on one --data_dir, three with each of two texts: each must
    map its own text's vocabulary and ids, never the other's."""
    import subprocess

    texts = {"a": "abab\n" * 30000, "b": "xyz,\n" * 20000}
    for name, text in texts.items():
        (tmp_path / f"{name}.txt").write_text(text)
    shared = tmp_path / "prepared"
    processes = [
        (name, subprocess.Popen(
            [sys.executable, "-c", LOAD, str(tmp_path / f"{name}.txt"), str(shared)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
        for name in ("a", "b", "a", "b", "a", "b")
    ]  # fmt: skip
    for name, process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        chars, count = out.rsplit(" ", 1)
        assert chars == "".join(sorted(set(texts[name]))) and int(count) == len(texts[name])


def test_a_data_dir_holding_the_users_files_is_refused(tmp_path):
    from data import load_dataset
    from infra.errors import DataError

    text = tmp_path / "text.txt"
    text.write_text("hello world\n" * 30)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "vocab.json").write_text("my own vocabulary")
    (folder / "notes.md").write_text("my notes")
    with pytest.raises(DataError, match="holds files this project did not write"):
        load_dataset("text", text, folder)
    assert (folder / "vocab.json").read_text() == "my own vocabulary"


@pytest.fixture
def small_disk(tmp_path):
    """A real, nearly full disk: a 64 KB tmpfs (root only)."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
        ).returncode
    ):
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.e2e
def test_a_full_disk_while_preparing_is_one_line_and_leaves_no_partial_cache(
    small_disk, tmp_path, capsys
):
    text = tmp_path / "text.txt"
    text.write_text("to be or not to be\n" * 5000)  # 95,000 characters: 190 KB of ids
    argv = ["--config", "tiny", "--device", "cpu", "--dataset", "text", "--data_path", str(text),
            "--data_dir", str(small_disk / "prepared"),
            "--out_dir", str(tmp_path / "run")]  # fmt: skip
    result = run_process([sys.executable, "train.py", *argv])
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "disk full" in result.stderr and "train.bin" in result.stderr
    left = sorted(p.name for p in (small_disk / "prepared").iterdir())
    assert left == [".lock"]  # no half-written file a later run could take for data


# ---- one line, never a traceback; bounded waits; nothing generated is lost ------------------


@pytest.mark.e2e
@pytest.mark.parametrize(
    "yaml_text, extra, message",
    [
        ("1: 2\n", [], "unknown key 1: keys are names"),
        ("", ["--dist_timeout", "1e20"], "dist_timeout: must be positive and at most"),
        ("", ["--exact_max_chars", "-1"], "exact_max_chars: must not be negative"),
    ],
)
def test_more_config_mistakes_are_one_line_and_exit_2(tmp_path, capsys, yaml_text, extra, message):
    config = tmp_path / "mine.yaml"
    config.write_text(yaml_text)
    assert train.main(["--config", str(config), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


@pytest.mark.e2e
def test_a_path_with_dollars_is_text_in_the_attention_picture(tiny_run, tmp_path):
    odd = tmp_path / "run $x^{2}$ and $$"
    odd.mkdir()
    (odd / "last.pt").write_bytes((tiny_run / "last.pt").read_bytes())
    png = tmp_path / "a.png"
    argv = ["--ckpt", str(odd), "--prompt", "ROMEO:", "--max_new_tokens", "0"]
    assert sample.main([*argv, "--attention", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.e2e
def test_the_exact_pass_on_a_long_split_scores_its_first_characters_and_says_so(tiny_argv, capsys):
    assert train.main(tiny_argv("--max_iters", "5", "--exact_max_chars", "500")) == 0
    assert "exact val loss" in (out := capsys.readouterr().out)
    assert "over the first 500 of 111,539 characters" in out


@pytest.mark.e2e
def test_ctrl_c_while_sampling_into_a_file_keeps_what_was_generated(tiny_run, tmp_path):
    import signal
    import subprocess
    import time

    out = tmp_path / "sample.txt"
    argv = [sys.executable, "sample.py", "--ckpt", str(tiny_run), "--prompt", "ROMEO:",
            "--max_new_tokens", "10000000", "--device", "cpu"]  # fmt: skip
    with open(out, "w") as file:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=file, stderr=subprocess.PIPE, text=True)
        time.sleep(4)  # generating, into a file: nothing printed yet
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err
    text = out.read_text()
    assert text.startswith("ROMEO:") and len(text) > 100  # the prompt and what followed it


@pytest.mark.e2e
def test_a_model_too_large_for_memory_is_one_line_before_anything_is_allocated(tiny_argv, capsys):
    import time

    start = time.perf_counter()
    assert train.main(tiny_argv("--n_embd", "1000000", "--n_head", "1")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "GiB, more than the" in err
    assert time.perf_counter() - start < 30  # refused, not attempted


@pytest.mark.e2e
def test_a_path_holding_the_pages_markers_stays_text_in_the_explorer(tiny_run, tmp_path):
    import json
    import re

    odd = tmp_path / "__DATA__ __TITLE__ <b>"
    odd.mkdir()
    (odd / "last.pt").write_bytes((tiny_run / "last.pt").read_bytes())
    page = tmp_path / "page.html"
    argv = ["--ckpt", str(odd), "--prompt", "ROMEO:", "--max_new_tokens", "5"]
    assert sample.main([*argv, "--attention", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    title = re.search(r"<title>(.*?)</title>", text).group(1)
    assert "__DATA__ __TITLE__ &lt;b&gt;" in title and "<b>" not in title
    data = re.search(r'data-role="data">(.*?)</script>', text, re.S).group(1)
    assert json.loads(data.replace("<\\/", "</"))["ids"]  # the data is whole, in its place
