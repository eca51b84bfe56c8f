"""The attention explorer as a Python object: what sample.py --attention writes to a file,
shown inline by a notebook (its `_repr_html_`) or saved as a page."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from data import CharTokenizer
from infra.device import inference_autocast
from infra.errors import ConfigError
from model import GPT, generate
from viz.explorer import attention_over_text, explorer_fragment, explorer_html


@dataclass(frozen=True, repr=False)
class Explorer:
    """One explorer: the text's attention, ready to show, as a fragment with an id of its own, so
    several live on one notebook page without touching each other. It prints as one line: its
    data (megabytes at a few hundred characters) is for the page, not for a text output."""

    attention: dict
    chars: list[str]
    prompt_length: int
    title: str

    @property
    def text(self) -> str:
        return "".join(self.chars[i] for i in self.attention["ids"])

    def __repr__(self) -> str:
        scores, ids = self.attention["scores"], self.attention["ids"]  # scores: (layer, head, t, s)
        return f"<Explorer: {len(ids)} characters, {len(scores)} layers x {len(scores[0])} heads>"

    def _repr_html_(self) -> str:  # Jupyter's and Colab's inline display
        return explorer_fragment(self.attention, self.chars, self.prompt_length, self.title)

    def save(self, path: str | Path) -> Path:
        """The explorer as a page of its own, which opens from disk, offline."""
        page = explorer_html(self.attention, self.chars, self.prompt_length, self.title)
        Path(path).write_text(page, encoding="utf-8")
        return Path(path)


@torch.no_grad()
def explore(
    model: GPT,
    tokenizer: CharTokenizer,
    prompt: str,
    max_new_tokens: int = 0,
    temperature: float = 1.0,
    seed: int = 1337,
    title: str | None = None,
) -> Explorer:
    """The explorer over `prompt` and, with max_new_tokens, the text the model goes on with
    (drawn with `seed`): every layer's and head's attention, from the model's own computation."""
    if unknown := tokenizer.unknown_characters(prompt):
        raise ConfigError(f"the prompt has characters the model never saw: {unknown!r}")
    if not prompt:
        raise ConfigError("the prompt is empty; give at least one character")
    device = next(model.parameters()).device
    ids = tokenizer.encode(prompt)
    with inference_autocast(device):
        if max_new_tokens:
            generator = torch.Generator(device=device).manual_seed(seed)
            idx = torch.tensor([ids], device=device)
            out = generate(model, idx, max_new_tokens, temperature=temperature, generator=generator)
            ids = out[0].tolist()
        attention = attention_over_text(model, ids)
    title = title if title is not None else f"{len(ids)} characters"
    return Explorer(attention, list(tokenizer.chars), len(tokenizer.encode(prompt)), title)
