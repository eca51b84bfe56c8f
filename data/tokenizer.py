"""A character-level tokenizer: one token per distinct character, ids in sorted character order."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from infra.errors import DataError


class CharTokenizer:
    def __init__(self, chars: Sequence[str]) -> None:
        if any(len(c) != 1 for c in chars) or list(chars) != sorted(set(chars)):
            raise ValueError("a vocabulary is distinct single characters, sorted by code point")
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        # the code points in id order, for encoding a whole corpus with one searchsorted
        self._codepoints = np.array([ord(c) for c in self.chars], dtype=np.uint32)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown_characters(self, text: str) -> list[str]:
        return sorted(set(text) - self.stoi.keys())

    def _check_known(self, text: str) -> None:
        unknown = self.unknown_characters(text)
        if unknown:
            shown = ", ".join(repr(c) for c in unknown[:10])
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise DataError(f"{'character' if len(unknown) == 1 else 'characters'} {shown}{more} "
                            f"not in the vocabulary of {self.vocab_size} characters")  # fmt: skip

    def encode(self, text: str) -> list[int]:
        self._check_known(text)
        return [self.stoi[c] for c in text]

    def encode_array(self, text: str) -> np.ndarray:
        """encode() for a whole corpus at numpy speed: a uint16 array of ids."""
        self._check_known(text)
        if self.vocab_size > np.iinfo(np.uint16).max + 1:
            raise DataError(f"{self.vocab_size} distinct characters do not fit in uint16 ids")
        codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        return np.searchsorted(self._codepoints, codepoints).astype(np.uint16)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"chars": self.chars}, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        return cls(json.loads(Path(path).read_text("utf-8"))["chars"])
