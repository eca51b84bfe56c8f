"""Finding the corpus and preparing it: a vocabulary, a 90/10 split, uint16 token arrays.

Tiny Shakespeare (Karpathy's char-rnn corpus) is a path the user gives, else the cache
`data/shakespeare_char/input.txt`, else a download, checked against its size and SHA-256; any
other UTF-8 text trains too (dataset "text"). `train.bin` and `val.bin` (uint16 ids, memory-mapped:
2 bytes a character) sit beside `vocab.json` and `meta.json`, which records the SHA-256 of the
source and of every prepared file. Each start checks them all (milliseconds), so a changed source
or an altered file is prepared again, never used. No pickle anywhere."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.tokenizer import CharTokenizer
from infra.errors import DataError
from infra.files import LOCK_NAME, TEMPORARY_SUFFIX, locked, refuse_link, write_atomic
from infra.progress import progress

SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
SHAKESPEARE_BYTES = 1_115_394
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

DATA_ROOT = Path(__file__).resolve().parent  # this package's folder: data/
SHAKESPEARE_DIR = DATA_ROOT / "shakespeare_char"
SHAKESPEARE_CACHE = SHAKESPEARE_DIR / "input.txt"

DATASETS = ("shakespeare_char", "text")
VAL_FRACTION = 0.1
PREPARED_FORMAT = 3  # 3: meta.json says who wrote the folder, and every prepared file's SHA-256
OWNER = "char-gpt"  # meta.json's "written_by": this project prepared the folder
HOW_TO_SUPPLY = (
    f"download {SHAKESPEARE_URL} and save it as {SHAKESPEARE_CACHE}, "
    "or pass --data_path PATH to a copy"
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_shakespeare(path: Path) -> None:
    """Raise DataError unless path holds exactly Tiny Shakespeare."""
    size = path.stat().st_size
    if size != SHAKESPEARE_BYTES:
        problem = f"{size:,} bytes, expected {SHAKESPEARE_BYTES:,}"
    elif sha256_of(path) != SHAKESPEARE_SHA256:
        problem = f"SHA-256 differs from {SHAKESPEARE_SHA256[:12]}..."
    else:
        return
    raise DataError(f"{path} is not Tiny Shakespeare ({problem}); to train on your own text: "
                    f"python train.py --dataset text --data_path {path}; otherwise "
                    f"{HOW_TO_SUPPLY}")  # fmt: skip


def download_shakespeare(dest: Path, url: str = SHAKESPEARE_URL) -> None:
    """Download to a temporary file beside dest, check it, then rename it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.download")
    try:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
            shutil.copyfileobj(response, out)
        check_shakespeare(tmp)
        os.replace(tmp, dest)
    except DataError:
        raise DataError(f"the download from {url} is not Tiny Shakespeare (wrong size or "
                        f"checksum); {HOW_TO_SUPPLY}") from None  # fmt: skip
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DataError(f"could not download Tiny Shakespeare ({reason}); "
                        f"{HOW_TO_SUPPLY}") from None  # fmt: skip
    finally:
        tmp.unlink(missing_ok=True)


def find_shakespeare(
    data_path: str | Path | None = None, cache: Path = SHAKESPEARE_CACHE,
    url: str = SHAKESPEARE_URL, say: Callable[[str], None] = lambda message: None,
) -> Path:  # fmt: skip
    """A checked copy of Tiny Shakespeare: data_path, else the cache, else a download into it."""
    path = Path(data_path) if data_path else cache
    if data_path and not path.is_file():
        raise DataError(f"data_path {path} does not exist")
    if not data_path and not cache.is_file():
        say(f"downloading Tiny Shakespeare from {url} to {cache}")
        download_shakespeare(cache, url)
    check_shakespeare(path)
    return path


@dataclass
class PreparedData:
    train: torch.Tensor  # (N_train,) uint16 token ids, memory-mapped from train.bin
    val: torch.Tensor  # (N_val,) uint16 token ids, memory-mapped from val.bin
    tokenizer: CharTokenizer
    data_dir: Path


# Characters encoded at a time: the peak memory is the text and its ids (2 bytes a character), not
# a UTF-32 copy of the whole text.
ENCODE_CHUNK = 1 << 22
PREPARED_FILES = ("train.bin", "val.bin", "vocab.json")


def prepare(source: Path, data_dir: Path, source_sha256: str) -> None:
    """Tokenize source into data_dir (the files this module's docstring names). meta.json is
    written first as a claim (the folder's files are this project's, whatever stops the work) and
    last in full, so a half-finished preparation is never taken for one; a failed one is removed."""
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{source} is not UTF-8 text (bad byte at offset {e.start})") from None
    if len(text) < 2:
        raise DataError(f"{source} holds {len(text)} characters; a corpus needs at least 2")
    tokenizer = CharTokenizer.from_text(text)
    ids = np.empty(len(text), dtype=np.uint16)
    chunks = range(0, len(text), ENCODE_CHUNK)
    for start in progress(chunks, len(chunks), "encoding the text", unit="chunk"):
        chunk = text[start : start + ENCODE_CHUNK]
        ids[start : start + len(chunk)] = tokenizer.encode_array(chunk)
    del text
    n_train = int(len(ids) * (1 - VAL_FRACTION))
    meta_path = data_dir / "meta.json"
    try:
        write_atomic(meta_path, lambda p: p.write_text(json.dumps({"written_by": OWNER})))
        # memoryview: written from the array itself, without a copy
        write_atomic(data_dir / "train.bin", lambda p: p.write_bytes(memoryview(ids[:n_train])))
        write_atomic(data_dir / "val.bin", lambda p: p.write_bytes(memoryview(ids[n_train:])))
        write_atomic(data_dir / "vocab.json", tokenizer.save)
        meta = {
            "format": PREPARED_FORMAT, "written_by": OWNER,
            "source": str(source), "source_sha256": source_sha256,
            "vocab_size": tokenizer.vocab_size, "train_tokens": n_train,
            "val_tokens": len(ids) - n_train,
            "files": {name: sha256_of(data_dir / name) for name in PREPARED_FILES},
        }  # fmt: skip
        write_atomic(meta_path, lambda p: p.write_text(json.dumps(meta, indent=2)))
    except BaseException:
        for name in (*PREPARED_FILES, "meta.json"):
            (data_dir / name).unlink(missing_ok=True)
        raise


def check_preparation(data_dir: Path, source_sha256: str) -> str | None:
    """Why data_dir does not hold a complete, unaltered preparation of the text with this SHA-256
    (None if it does): each file's size and SHA-256 as recorded, the vocabulary, every id in it."""
    try:
        meta = json.loads((data_dir / "meta.json").read_text())
    except FileNotFoundError:
        return "first use"
    except (OSError, ValueError):
        return "its meta.json is unreadable"
    try:
        if meta["format"] != PREPARED_FORMAT:
            return "its format differs from this code's"
        if meta["source_sha256"] != source_sha256:
            return "the text changed since it was prepared"
        sizes = {"train.bin": 2 * meta["train_tokens"], "val.bin": 2 * meta["val_tokens"]}
        for name in PREPARED_FILES:
            path = data_dir / name
            if not path.is_file():
                return f"{name} is missing"
            if name in sizes and path.stat().st_size != sizes[name]:
                return f"{name} has {path.stat().st_size:,} bytes, not the {sizes[name]:,} recorded"
            if sha256_of(path) != meta["files"][name]:
                return f"{name} differs from what preparation wrote (SHA-256)"
        tokenizer = CharTokenizer.load(data_dir / "vocab.json")
        if tokenizer.vocab_size != meta["vocab_size"]:
            return "vocab.json does not have the recorded number of characters"
    except (KeyError, TypeError, ValueError):
        return "meta.json or vocab.json is not what preparation writes"
    for name in ("train.bin", "val.bin"):  # recorded hashes can be made to fit altered ids
        ids = np.memmap(data_dir / name, dtype=np.uint16, mode="r")
        if ids.size and int(ids.max()) >= tokenizer.vocab_size:
            raise DataError(
                f"{data_dir / name} holds token id {int(ids.max())}, outside its vocabulary of "
                f"{tokenizer.vocab_size} characters: delete the folder {data_dir}, and the next "
                "start prepares it again from the text"
            )
    return None


# What preparation writes into a data_dir (and the corpus it keeps there): all else is the user's.
OWN_FILES = {*PREPARED_FILES, "meta.json", "input.txt", LOCK_NAME}


def check_data_dir(data_dir: Path) -> None:
    """Refuse a data_dir with files this project did not write (any name), or a link for its own."""
    for name in OWN_FILES:
        refuse_link(data_dir / name)
    if not data_dir.is_dir():
        return
    foreign = sorted(
        p.name for p in data_dir.iterdir()
        if p.name not in OWN_FILES and not p.name.endswith((TEMPORARY_SUFFIX, ".download"))
    )  # fmt: skip
    try:  # meta.json says this project prepared the folder (or has the fields format 2 wrote)
        meta = json.loads((data_dir / "meta.json").read_text())
        ours = (
            meta.get("written_by") == OWNER or {"format", "source_sha256", "files"} <= meta.keys()
        )
    except (OSError, ValueError, AttributeError):  # AttributeError: meta is not a mapping
        ours = False
    if not ours:  # then files of its own names are not its own either
        foreign += [n for n in (*PREPARED_FILES, "meta.json") if (data_dir / n).exists()]
    if foreign:
        shown = ", ".join(foreign[:3]) + (" and more" if len(foreign) > 3 else "")
        raise DataError(f"data_dir {data_dir} holds files this project did not write ({shown}); "
                        "it prepares only into a folder of its own: give an empty or a new "
                        "--data_dir")  # fmt: skip


def load_dataset(
    dataset: str = "shakespeare_char", data_path: str | Path | None = None,
    data_dir: str | Path | None = None, say: Callable[[str], None] = lambda message: None,
) -> PreparedData:  # fmt: skip
    """Find the text, prepare it unless data_dir holds a checked preparation of it, and map the
    token arrays of both splits into memory (uint16, read from disk as needed)."""
    if dataset == "shakespeare_char":
        source = find_shakespeare(data_path, say=say)
    elif dataset == "text":
        if not data_path:
            raise DataError("dataset 'text' needs --data_path PATH to a UTF-8 text file")
        source = Path(data_path)
        if not source.is_file():
            raise DataError(f"data_path {source} does not exist")
    else:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    source_sha256 = sha256_of(source)
    # Unless --data_dir says, a text of the user's is prepared in a folder named for the file and
    # keyed by its SHA-256, so that two texts of one name never share one.
    own_dir = DATA_ROOT / "text" / f"{source.stem}-{source_sha256[:16]}"
    data_dir = Path(data_dir or (SHAKESPEARE_DIR if dataset == "shakespeare_char" else own_dir))
    check_data_dir(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)

    def read_ids(name: str) -> torch.Tensor:
        # Copy-on-write: pages are read from the file as needed, and nothing is written back.
        # Every id is inside the vocabulary: check_preparation saw to it.
        return torch.from_numpy(np.memmap(data_dir / name, dtype=np.uint16, mode="c"))

    # One process at a time checks, prepares and maps the files: others starting on the same
    # folder wait, then find it prepared (or prepare it for their text), and each maps a
    # consistent vocabulary and ids (a mapped file keeps its content if it is replaced later).
    with locked(data_dir / LOCK_NAME):
        problem = check_preparation(data_dir, source_sha256)
        if problem is not None:
            say(f"preparing {source} into {data_dir} ({problem})")
            prepare(source, data_dir, source_sha256)
        tokenizer = CharTokenizer.load(data_dir / "vocab.json")
        return PreparedData(read_ids("train.bin"), read_ids("val.bin"), tokenizer, data_dir)
