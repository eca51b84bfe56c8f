"""Nothing from outside can touch a user's files: a checkpoint is data, never a command. Real
checkpoint files, altered as someone else's could be, given to the real scripts; prepared data
keyed by what it is (run directories: tests/test_run_dir.py)."""

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


@pytest.mark.parametrize("name", ["meta.json", "train.bin", "vocab.json"])
def test_a_file_of_the_projects_own_name_that_it_did_not_write_is_never_overwritten(tmp_path, name):
    from data import load_dataset
    from infra.errors import DataError

    text = tmp_path / "text.txt"
    text.write_text("hello world\n" * 30)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / name).write_text("the user's own, by chance under this name")
    with pytest.raises(DataError, match=rf"holds files this project did not write \({name}\)"):
        load_dataset("text", text, folder)
    assert (folder / name).read_text() == "the user's own, by chance under this name"
    assert sorted(p.name for p in folder.iterdir()) == [name]


def test_a_preparation_stopped_half_way_is_prepared_again(shakespeare, shakespeare_path, tmp_path):
    """A process killed while preparing leaves meta.json's claim and part of the files: the
    folder is the project's, and the next start prepares it again."""
    import json

    from data import load_dataset

    folder = tmp_path / "prepared"
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"written_by": "char-gpt"}))
    (folder / "train.bin").write_bytes(b"\x01\x00" * 100)
    said: list[str] = []
    data = load_dataset("shakespeare_char", shakespeare_path, folder, say=said.append)
    assert len(said) == 1 and said[0].startswith("preparing")
    assert torch.equal(data.train, shakespeare.train)


@pytest.mark.e2e
def test_token_ids_beyond_the_vocabulary_are_one_line_even_with_hashes_made_to_fit(
    shakespeare, shakespeare_path, tmp_path, capsys
):
    import hashlib
    import json
    import shutil

    folder = tmp_path / "prepared"
    shutil.copytree(shakespeare.data_dir, folder)
    ids = bytearray((folder / "val.bin").read_bytes())
    ids[100:102] = (300).to_bytes(2, "little")  # a token of a 301-character vocabulary
    (folder / "val.bin").write_bytes(bytes(ids))
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"]["val.bin"] = hashlib.sha256(bytes(ids)).hexdigest()
    (folder / "meta.json").write_text(json.dumps(meta))
    argv = ["--config", "tiny", "--device", "cpu", "--data_path", str(shakespeare_path),
            "--data_dir", str(folder), "--out_dir", str(tmp_path / "run")]  # fmt: skip
    assert train.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (
        f"{folder / 'val.bin'} holds token id 300" in err and f"delete the folder {folder}" in err
    )
    assert not (tmp_path / "run").exists()


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


def run_named(name: str, tiny_run, tmp_path) -> str:
    """A copy of tiny_run's checkpoint in a run directory of that name, for sample.py."""
    odd = tmp_path / name
    odd.mkdir()
    (odd / "last.pt").write_bytes((tiny_run / "last.pt").read_bytes())
    return str(odd)


@pytest.mark.e2e
def test_a_path_with_dollars_is_text_in_the_attention_picture(tiny_run, tmp_path):
    odd = run_named("run $x^{2}$ and $$", tiny_run, tmp_path)
    png = tmp_path / "a.png"
    argv = ["--ckpt", odd, "--prompt", "ROMEO:", "--max_new_tokens", "0"]
    assert sample.main([*argv, "--attention", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.e2e
def test_the_exact_pass_on_a_long_split_scores_its_first_characters_and_says_so(tiny_argv, capsys):
    assert train.main(tiny_argv("--max_iters", "5", "--exact_max_chars", "500")) == 0
    assert "exact val loss" in (out := capsys.readouterr().out)
    assert "over the first 500 of 111,539 predicted characters" in out


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

    odd = run_named("__DATA__ __TITLE__ <b>", tiny_run, tmp_path)
    page = tmp_path / "page.html"
    argv = ["--ckpt", odd, "--prompt", "ROMEO:", "--max_new_tokens", "5"]
    assert sample.main([*argv, "--attention", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    title = re.search(r"<title>(.*?)</title>", text).group(1)
    assert "__DATA__ __TITLE__ &lt;b&gt;" in title and "<b>" not in title
    data = re.search(r'data-role="data">(.*?)</script>', text, re.S).group(1)
    assert json.loads(data.replace("<\\/", "</"))["ids"]  # the data is whole, in its place
