"""What train() and sweep() return, and what a hook is called with and may raise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from data import CharTokenizer
from infra.device import inference_autocast
from model import GPT, evaluating, generate
from training.config import TrainConfig
from training.trainer import Trainer


class StopTraining(Exception):
    """Raised by a hook: the run saves last.pt and ends there, and train() returns it."""


@dataclass
class Run:
    """A run, as train() returns it (and hooks see it while it trains): the model with the weights
    it ended with (best.pt in out_dir holds the best val loss's), its tokenizer, and `history`: a
    plain dict for every iteration that recorded something, e.g. {"iter": 250, "val_loss": 1.7,
    ...} at an evaluation, {"iter": 260, "batch_loss": 1.5, "lr": 0.004, ...} at a log point
    (pandas.DataFrame takes it as it is). `stopped`: why it ended before max_iters, or None."""

    config: TrainConfig
    model: GPT
    tokenizer: CharTokenizer
    history: list[dict[str, float]]
    iter_num: int = 0
    best_val_loss: float = float("inf")
    val_loss_exact: float | None = None
    stopped: str | None = None
    signal: int | None = field(default=None, repr=False)  # the signal that stopped it, if one

    @property
    def out_dir(self) -> Path:
        return Path(self.config.out_dir)

    def __repr__(self) -> str:
        ended = f", stopped: {self.stopped}" if self.stopped else ""
        return (
            f"<Run {self.out_dir}: {self.iter_num} iterations, best val loss "
            f"{self.best_val_loss:.4f}{ended}>"
        )

    def sample(
        self, prompt: str = "\n", max_new_tokens: int = 200, temperature: float = 0.8, seed=1337
    ) -> str:
        """The prompt and what the model writes after it (with the weights it ended with)."""
        device = next(self.model.parameters()).device
        idx = torch.tensor([self.tokenizer.encode(prompt)], device=device)
        generator = torch.Generator(device).manual_seed(seed)
        with evaluating(self.model), inference_autocast(device):
            out = generate(
                self.model, idx, max_new_tokens, temperature=temperature, generator=generator
            )
        return self.tokenizer.decode(out[0].tolist())


@dataclass(frozen=True)
class Step:
    """What a hook is called with after every optimizer step. Reading `loss` waits for the
    device (one sync); nothing else does."""

    step: int  # optimizer steps taken: the iteration
    lr: float  # this step's learning rate (AdamW's; Muon's is muon_lr_ratio times it)
    model: GPT
    evaluation: dict[str, float] | None  # {"train": ..., "val": ...} on a step that had one
    run: Run
    loss_tensor: torch.Tensor = field(repr=False)
    # its optimizers, its data, its state: as the loop has them
    trainer: Trainer = field(repr=False)

    @property
    def loss(self) -> float:
        """The step's mean training loss."""
        return self.loss_tensor.item()


Hook = Callable[[Step], object]


@dataclass
class Sweep:
    """What sweep() returns: its directory, its variants' runs in the order they trained, their
    rows of the table (each a plain dict) and the table in Markdown, sorted by best val loss."""

    out_dir: Path
    runs: list[Run]
    rows: list[dict[str, object]]
    table: str

    def __repr__(self) -> str:
        return f"<Sweep {self.out_dir}: {len(self.runs)} variants>\n{self.table}"
