"""The model's options (GPTConfig) and its size from them alone."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

ATTENTION_IMPLS = ("sdpa", "math")
POS_EMBEDDINGS = ("learned", "rope")


def _option(default: object, help: str, **metadata: object):
    """A config field with its help text (and choices): the training config and every command
    line read them from here."""
    return field(default=default, metadata={"help": help, **metadata})


@dataclass(frozen=True)
class GPTConfig:
    """The model's options, each defined and checked here only. The training config inherits these
    fields as its model keys, with the same defaults, help and checks (training/config.py).
    `resumable` marks the options a resumed run may change: they do not change what the weights
    mean."""

    vocab_size: int = _option(65, "distinct tokens: the training config takes it from the data")
    block_size: int = _option(64, "context length in characters")
    n_layer: int = _option(4, "transformer blocks")
    n_head: int = _option(4, "attention heads per block")
    n_embd: int = _option(128, "channels of the residual stream")
    dropout: float = _option(0.0, "dropout probability", resumable=True)
    bias: bool = _option(True, "biases in Linear and LayerNorm layers")
    attn_impl: str = _option(
        "sdpa",
        "sdpa (torch's fused kernels, flash attention where available) or math (the formula "
        "written out, for reading and tests)",
        choices=ATTENTION_IMPLS,
        resumable=True,
    )
    pos_embedding: str = _option(
        "learned",
        "learned (GPT-2's position table transformer.wpe) or rope (rotary, on queries and keys)",
        choices=POS_EMBEDDINGS,
    )

    def __post_init__(self) -> None:
        def require(ok: bool, key: str, message: str) -> None:
            if not ok:
                raise ValueError(f"{key}: {message}, got {getattr(self, key)!r}")

        for f in fields(GPTConfig):
            if "choices" in f.metadata:
                choices = f.metadata["choices"]
                must = f"must be one of {', '.join(choices)}"
                require(getattr(self, f.name) in choices, f.name, must)
        for key in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            require(getattr(self, key) >= 1, key, "must be at least 1")
        require(
            self.n_embd % self.n_head == 0, "n_embd", f"must be divisible by n_head ({self.n_head})"
        )
        require(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")
        require(
            self.pos_embedding != "rope" or (self.n_embd // self.n_head) % 2 == 0,
            "pos_embedding",
            "rope needs an even head size n_embd / n_head",
        )


def parameter_count(config: GPTConfig) -> int:
    """How many parameters GPT(config) has (the tied embedding once), from the config alone: a
    size can be checked against memory before any of it is allocated."""
    C, biases = config.n_embd, config.bias
    per_layer = 12 * C * C + (9 * C if biases else 0)  # c_attn 3C², c_proj C², c_fc and proj 8C²
    per_layer += 2 * C * (2 if biases else 1)  # ln_1, ln_2
    positions = config.block_size * C if config.pos_embedding == "learned" else 0
    return config.vocab_size * C + positions + config.n_layer * per_layer + C * (2 if biases else 1)
