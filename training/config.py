"""The training configuration, one frozen dataclass of flat keys with nanoGPT's names: its model
keys (n_layer, n_embd, ...) are GPTConfig's own fields, with their defaults, help and checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from data import DATASETS
from infra.cli import option, require
from infra.device import DEFAULT_DIST_TIMEOUT, DTYPE_NAMES, is_device_name
from model import GPTConfig

MAX_DIST_TIMEOUT = 365 * 24 * 3600.0  # torch keeps the timeout as a timedelta: it must fit
OPTIMIZERS = ("adamw", "muon")
LR_SCHEDULES = ("constant", "linear", "cosine", "wsd")  # training/optim.py: lr_multiplier


@dataclass(frozen=True)
class TrainConfig(GPTConfig):
    """A run's settings; vocab_size, the one model field that is not a key, comes from the data."""

    # where things go
    out_dir: str = option(
        "",
        "run directory for checkpoints and TensorBoard (default: out/<config>); auto: a new one "
        "for each run, out/<config>-<options given>-<date>-<time>",
    )
    dataset: str = option(
        "shakespeare_char",
        "shakespeare_char, or text: any UTF-8 file at data_path",
        choices=DATASETS,
    )
    data_path: str = option(
        "", "the text file (default for shakespeare_char: cache, then download)"
    )
    data_dir: str = option("", "where the prepared token arrays go (default: under data/)")
    # the machine
    device: str = option("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    dtype: str = option(
        "auto",
        "auto (bf16 on CUDA that has it, else fp16; bf16 on a CPU with native bf16, else fp32; "
        "fp32 on MPS), float32, bfloat16 or float16",
        choices=DTYPE_NAMES,
    )
    compile: bool | None = option(
        None,
        "wrap the model in torch.compile: true, false, or auto (null): on CUDA when the run is "
        "long enough to repay the compile time, never on the CPU or MPS",
    )
    dist_timeout: float = option(
        DEFAULT_DIST_TIMEOUT,
        "under torchrun: seconds a process waits for the others in a collective before the job "
        "ends with an error (a stopped or hung process)",
    )
    seed: int = option(1337, "seed for initialisation, batches and dropout")
    batch_size: int = option(12, "sequences per micro-batch (per process under torchrun)")
    # optimizer and schedule
    optimizer: str = option(
        "adamw",
        "adamw, or muon: Muon for the matrices inside the blocks, AdamW for the rest",
        choices=OPTIMIZERS,
    )
    learning_rate: float = option(
        1e-3, "peak learning rate of the whole model: AdamW's, and Muon's times muon_lr_ratio"
    )
    min_lr_ratio: float = option(
        0.1, "the rate after decay, and its floor, as a fraction of the peak"
    )
    lr_schedule: str = option(
        "cosine", "constant, linear, cosine or wsd (warm-up, stable, decay)", choices=LR_SCHEDULES
    )
    warmup_iters: int = option(100, "iterations of linear warm-up")
    lr_decay_iters: int | None = option(None, "iteration where decay ends (default: max_iters)")
    cooldown_frac: float = option(0.2, "wsd only: fraction of lr_decay_iters spent decaying")
    max_iters: int = option(2000, "optimizer steps in the whole run")
    weight_decay: float = option(0.1, "weight decay, on matrices only")
    beta1: float = option(0.9, "AdamW beta1")
    beta2: float = option(0.99, "AdamW beta2")
    muon_lr_ratio: float = option(
        20.0, "muon only: Muon's rate as a multiple of learning_rate (its updates are normalised)"
    )
    muon_momentum: float = option(0.95, "muon only: Muon's momentum (Nesterov)")
    grad_clip: float = option(1.0, "clip the gradient norm to this (0: no clipping)")
    gradient_accumulation_steps: int = option(
        1, "micro-batches per optimizer step, in total over all processes"
    )
    # evaluation and logging
    eval_interval: int = option(250, "evaluate and checkpoint every this many iterations")
    eval_iters: int = option(20, "batches per split in each evaluation")
    loss_interval: int = option(
        0,
        "also estimate the losses every this many iterations, between evaluations: more points "
        "on the loss curves, no sample or checkpoint (0: only at evaluations)",
    )
    log_interval: int = option(10, "iterations between log lines")
    exact_max_chars: int = option(
        2_000_000,
        "the exact val loss at the end scores at most this many characters, the split's first "
        "(0: every one)",
    )
    sample_chars: int = option(
        200, "characters of sample text written at each evaluation (0: none)"
    )
    inspect: bool = option(
        True,
        "at each evaluation, draw attention maps (IMAGES), weight and gradient histograms "
        "(HISTOGRAMS) and save the embedding (PROJECTOR) for TensorBoard",
    )
    extras_budget: float = option(
        0.05,
        "the largest share of the run's time so far that the sample and the inspect views may "
        "take, in [0, 1]: an evaluation past it estimates the losses alone (1: every evaluation "
        "has them)",
        resumable=True,
    )
    probe_text: str = option(
        "", "text whose attention maps TensorBoard shows (default: a line of the validation split)"
    )
    tensorboard: bool = option(True, "write TensorBoard event files into out_dir")
    stack: bool | None = option(
        None,
        "in a sweep: train its variants as one stack of models, one step for all: true, false, "
        "or auto (null): on CUDA, where it pays; on a CPU one after another",
    )

    def __post_init__(self) -> None:
        super().__post_init__()  # the model's keys, and every key's choices

        def check(ok: bool, key: str, message: str) -> None:
            require(ok, self, key, message)

        check(self.dataset != "text" or bool(self.data_path), "data_path",
              "dataset 'text' needs a data_path")  # fmt: skip
        check(is_device_name(self.device), "device", "must be auto, cpu, cuda, cuda:N or mps")
        for key in ("batch_size", "max_iters", "gradient_accumulation_steps", "eval_interval",
                    "eval_iters", "log_interval"):  # fmt: skip
            check(getattr(self, key) >= 1, key, "must be at least 1")
        for key in ("warmup_iters", "weight_decay", "grad_clip", "sample_chars", "loss_interval",
                    "exact_max_chars"):  # fmt: skip
            check(getattr(self, key) >= 0, key, "must not be negative")
        for key in ("learning_rate", "muon_lr_ratio"):
            check(getattr(self, key) > 0, key, "must be positive")
        for key in ("min_lr_ratio", "cooldown_frac", "extras_budget"):
            check(0.0 <= getattr(self, key) <= 1.0, key, "must be in [0, 1]")
        for key in ("beta1", "beta2", "muon_momentum"):
            check(0.0 <= getattr(self, key) < 1.0, key, "must be in [0, 1)")
        check(
            self.decay_end >= self.warmup_iters,
            "lr_decay_iters" if self.lr_decay_iters is not None else "max_iters",
            f"must not be less than warmup_iters ({self.warmup_iters})",
        )
        check(0 < self.dist_timeout <= MAX_DIST_TIMEOUT, "dist_timeout",
              f"must be positive and at most {MAX_DIST_TIMEOUT:,.0f} seconds (a year)")  # fmt: skip
        check(0 <= self.seed < 2**63, "seed", "must be between 0 and 2**63 - 1")
        check(len(self.probe_text) <= self.block_size, "probe_text",
              f"must be at most block_size ({self.block_size}) characters")  # fmt: skip

    @property
    def decay_end(self) -> int:
        """The iteration where the learning rate reaches its floor (min_lr_ratio of the peak)."""
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, **{key: getattr(self, key) for key in MODEL_KEYS})

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key in KEYS}


# The model's keys, and those a resumed run may not change, follow from GPTConfig's fields.
MODEL_KEYS = tuple(f.name for f in fields(GPTConfig) if f.name != "vocab_size")
ARCHITECTURE_KEYS = tuple(
    f.name for f in fields(GPTConfig) if f.name in MODEL_KEYS and not f.metadata.get("resumable")
)
# Where the data lies: a checkpoint's values for these are never followed (a checkpoint is data
# from anywhere); a resume takes them from the command line, and says which to give.
DATA_PATH_KEYS = ("data_path", "data_dir")
# The optimizers' state in a checkpoint is for the optimizer it was made with.
FIXED_ON_RESUME = (*ARCHITECTURE_KEYS, "optimizer")
KEYS = {f.name: f for f in fields(TrainConfig) if f.name != "vocab_size"}
