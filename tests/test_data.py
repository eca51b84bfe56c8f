"""Data: the known facts of Tiny Shakespeare, the tokenizer, acquisition and batching."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ROOT

from data import CharTokenizer, get_batch, load_dataset
from data.corpus import SHAKESPEARE_SHA256, find_shakespeare, sha256_of
from infra.errors import DataError


def test_vocabulary_has_65_characters_and_split_is_90_10(shakespeare):
    assert shakespeare.tokenizer.vocab_size == 65
    assert shakespeare.train.numel() == 1_003_854
    assert shakespeare.val.numel() == 111_540


def test_tokenizer_round_trips_the_whole_corpus(shakespeare, shakespeare_path):
    text = shakespeare_path.read_text(encoding="utf-8")
    ids = torch.cat([shakespeare.train, shakespeare.val])
    assert shakespeare.tokenizer.decode(ids.tolist()) == text
    assert shakespeare.tokenizer.encode(text[:5000]) == ids[:5000].tolist()


def test_vocabulary_is_sorted_unique_characters(shakespeare, shakespeare_path):
    text = shakespeare_path.read_text(encoding="utf-8")
    assert shakespeare.tokenizer.chars == sorted(set(text))


def test_tokenizer_saves_and_loads_as_json(tmp_path):
    tokenizer = CharTokenizer.from_text("hello, wörld\n")
    tokenizer.save(tmp_path / "vocab.json")
    assert json.loads((tmp_path / "vocab.json").read_text("utf-8"))["chars"] == tokenizer.chars
    loaded = CharTokenizer.load(tmp_path / "vocab.json")
    assert loaded.encode("wörld") == tokenizer.encode("wörld")


def test_unknown_character_error_names_the_character():
    tokenizer = CharTokenizer.from_text("abc")
    with pytest.raises(DataError, match=r"'z'.*not in the vocabulary"):
        tokenizer.encode("abz")
    with pytest.raises(DataError, match="'€'"):
        tokenizer.encode_array("a€")


def test_checksum_failure_is_a_clear_error(shakespeare_path, tmp_path):
    corrupted = tmp_path / "input.txt"
    data = bytearray(shakespeare_path.read_bytes())
    data[1000] ^= 1  # same size, one bit flipped
    corrupted.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"not Tiny Shakespeare.*SHA-256"):
        find_shakespeare(corrupted)
    truncated = tmp_path / "short.txt"
    truncated.write_bytes(bytes(data[:5000]))
    with pytest.raises(DataError, match="5,000 bytes, expected 1,115,394"):
        find_shakespeare(truncated)


def test_lookup_order_is_data_path_then_cache_then_download(shakespeare_path, tmp_path):
    cache = tmp_path / "cache" / "input.txt"
    url = shakespeare_path.resolve().as_uri()  # a file:// URL: a real download, no network
    assert find_shakespeare(None, cache=cache, url=url) == cache  # downloaded into the cache
    assert sha256_of(cache) == SHAKESPEARE_SHA256
    assert find_shakespeare(None, cache=cache, url="file:///nonexistent") == cache  # cache hit
    assert find_shakespeare(shakespeare_path, cache=cache) == shakespeare_path  # data_path first


def test_offline_without_a_copy_says_how_to_supply_the_file(tmp_path):
    with pytest.raises(DataError, match=r"could not download.*--data_path") as info:
        find_shakespeare(None, cache=tmp_path / "input.txt", url="file:///no/such/file.txt")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "input.txt").exists()


def test_a_corrupt_download_is_not_kept(tmp_path):
    fake = tmp_path / "fake.txt"
    fake.write_text("not shakespeare")
    cache = tmp_path / "cache" / "input.txt"
    with pytest.raises(DataError, match=r"download .* is not Tiny Shakespeare"):
        find_shakespeare(None, cache=cache, url=fake.as_uri())
    assert list(cache.parent.iterdir()) == []


def test_own_text_trains_without_the_checksum(tmp_path):
    corpus = tmp_path / "poem.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 20, encoding="utf-8")
    data = load_dataset("text", corpus, tmp_path / "prepared")
    assert data.tokenizer.vocab_size == len(set(corpus.read_text()))
    assert data.train.numel() + data.val.numel() == len(corpus.read_text())


def test_preparation_is_reused_and_a_changed_source_is_prepared_again(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text("abcabcabcabc" * 10)
    prepared = tmp_path / "prepared"
    messages: list[str] = []
    load_dataset("text", corpus, prepared, say=messages.append)
    stamp = (prepared / "train.bin").stat().st_mtime_ns
    load_dataset("text", corpus, prepared, say=messages.append)
    assert (prepared / "train.bin").stat().st_mtime_ns == stamp  # reused, not rewritten
    assert len(messages) == 1
    corpus.write_text("xyzxyzxyzxyz" * 10)
    data = load_dataset("text", corpus, prepared, say=messages.append)
    assert "changed" in messages[-1]
    assert data.tokenizer.chars == ["x", "y", "z"]


def test_prepared_files_are_uint16_arrays_and_json(shakespeare):
    d = shakespeare.data_dir
    assert (d / "train.bin").stat().st_size == 2 * 1_003_854
    assert json.loads((d / "vocab.json").read_text("utf-8"))["chars"][0] == "\n"
    meta = json.loads((d / "meta.json").read_text())
    assert meta["source_sha256"] == SHAKESPEARE_SHA256
    assert not list(Path(d).glob("*.pkl"))


def test_missing_data_path_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("text", tmp_path / "nope.txt", tmp_path / "prepared")


def test_python_m_data_names_itself_as_typed_in_its_help():
    result = subprocess.run(
        [sys.executable, "-m", "data", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m data "), result.stdout[:80]


def test_batches_have_shape_b_t_and_targets_shifted_by_one(shakespeare):
    generator = torch.Generator().manual_seed(0)
    x, y = get_batch(shakespeare.train, 5, 32, generator)
    assert x.shape == y.shape == (5, 32)
    assert x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    # each row is a real window of the corpus: find it and check the target's last token
    data = shakespeare.train.long()  # stored as uint16, memory-mapped
    for row_x, row_y in zip(x, y, strict=True):
        starts = (data[: data.numel() - 32] == row_x[0]).nonzero().flatten()
        assert any(
            torch.equal(data[s : s + 32], row_x) and data[s + 32] == row_y[-1] for s in starts
        )


def test_same_seed_gives_same_batches_and_another_seed_does_not(shakespeare):
    def batches(seed):
        g = torch.Generator().manual_seed(seed)
        return [get_batch(shakespeare.train, 4, 16, g) for _ in range(3)]

    a, b, c = batches(1), batches(1), batches(2)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0], c[0][0])


def test_batching_uses_no_global_rng(shakespeare):
    torch.manual_seed(0)
    before = torch.get_rng_state()
    get_batch(shakespeare.train, 4, 16, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), before)


def _tamper_vocab_sorted(d: Path) -> None:  # z -> ~: still sorted, distinct single characters
    chars = json.loads((d / "vocab.json").read_text("utf-8"))["chars"]
    (d / "vocab.json").write_text(json.dumps({"chars": [c if c != "z" else "~" for c in chars]}))


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_vocab_sorted,
        lambda d: (d / "vocab.json").write_text('{"chars": ["a", "b"'),  # truncated
        lambda d: (d / "vocab.json").write_text('{"chars": ["b", "a"]}'),  # unsorted
        lambda d: (d / "train.bin").write_bytes(b"\xff\xff" * 1_003_854),  # ids past the vocabulary
        lambda d: (d / "train.bin").write_bytes((d / "train.bin").read_bytes()[::-1]),  # reversed
        lambda d: (d / "val.bin").write_bytes((d / "val.bin").read_bytes()[:1000]),  # truncated
    ],
    ids=["vocab-still-sorted", "vocab-truncated", "vocab-unsorted", "ids-too-large", "reversed",
         "val-truncated"],
)  # fmt: skip
def test_an_altered_preparation_is_prepared_again_never_used(
    shakespeare, shakespeare_path, tmp_path, tamper
):
    data_dir = tmp_path / "prepared"
    shutil.copytree(shakespeare.data_dir, data_dir)
    tamper(data_dir)
    said: list[str] = []
    data = load_dataset("shakespeare_char", shakespeare_path, data_dir, say=said.append)
    assert len(said) == 1 and said[0].startswith("preparing") and "(first use)" not in said[0]
    assert data.tokenizer.chars == shakespeare.tokenizer.chars
    assert torch.equal(data.train, shakespeare.train) and torch.equal(data.val, shakespeare.val)
    said.clear()
    load_dataset("shakespeare_char", shakespeare_path, data_dir, say=said.append)
    assert said == []  # checked and reused
