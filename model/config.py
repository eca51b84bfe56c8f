"""The model's options (GPTConfig) and its size from them alone."""

from __future__ import annotations

from dataclasses import dataclass

from infra.cli import check_choices, option, require


@dataclass(frozen=True)
class GPTConfig:
    """The model's options, each defined and checked here only: the training config inherits them
    as its model keys (training/config.py). `resumable` marks those a resumed run may change, which
    do not change what the weights mean. A value that cannot be is a ConfigError naming its key."""

    vocab_size: int = option(65, "distinct tokens: the training config takes it from the data")
    block_size: int = option(64, "context length in characters")
    n_layer: int = option(4, "transformer blocks")
    n_head: int = option(4, "attention heads per block")
    n_embd: int = option(128, "channels of the residual stream")
    dropout: float = option(0.0, "dropout probability", resumable=True)
    bias: bool = option(True, "biases in Linear and LayerNorm layers")
    attn_impl: str = option(
        "auto",
        "auto (math on the CPU, sdpa elsewhere: measured, docs/performance.md), sdpa (torch's "
        "fused kernels, flash attention where available) or math (the formula written out)",
        choices=("auto", "sdpa", "math"),
        resumable=True,
    )
    pos_embedding: str = option(
        "learned",
        "learned (GPT-2's position table transformer.wpe) or rope (rotary, on queries and keys)",
        choices=("learned", "rope"),
    )

    def __post_init__(self) -> None:
        check_choices(self)  # of every field with choices, a training config's too
        for key in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            require(getattr(self, key) >= 1, self, key, "must be at least 1")
        require(
            self.n_embd % self.n_head == 0,
            self, "n_embd", f"must be divisible by n_head ({self.n_head})",
        )  # fmt: skip
        require(0.0 <= self.dropout < 1.0, self, "dropout", "must be in [0, 1)")
        require(
            self.pos_embedding != "rope" or (self.n_embd // self.n_head) % 2 == 0,
            self, "pos_embedding", "rope needs an even head size n_embd / n_head",
        )  # fmt: skip


def parameter_count(config: GPTConfig) -> int:
    """How many parameters GPT(config) has (the tied embedding once), from the config alone: a
    size can be checked against memory before any of it is allocated."""
    C, biases = config.n_embd, config.bias
    per_layer = 12 * C * C + (9 * C if biases else 0)  # c_attn 3C², c_proj C², c_fc and proj 8C²
    per_layer += 2 * C * (2 if biases else 1)  # ln_1, ln_2
    positions = config.block_size * C if config.pos_embedding == "learned" else 0
    return config.vocab_size * C + positions + config.n_layer * per_layer + C * (2 if biases else 1)
