"""The training configuration: one frozen dataclass, filled as defaults < YAML file < command line.

Keys are flat and use nanoGPT's names. Every mistake (an unknown key, a wrong type, malformed YAML,
an impossible value) is a ConfigError whose one-line message names the key, raised before any
work starts.
"""

from __future__ import annotations

import difflib
import math
import sys
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from model import GPTConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = "small.yaml"

LR_SCHEDULES = ("constant", "linear", "cosine", "wsd")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
DATASETS = ("shakespeare_char", "text")
POS_EMBEDDINGS = ("learned", "rope")
# Keys that shape the model's weights: a resumed run cannot change them.
ARCHITECTURE_KEYS = ("block_size", "n_layer", "n_head", "n_embd", "bias", "pos_embedding")


class ConfigError(Exception):
    """A mistake in the configuration; the message is one line that names the key."""


def _key(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    # where things go
    out_dir: str = _key("", "run directory for checkpoints and TensorBoard (default: out/<config>)")
    dataset: str = _key(
        "shakespeare_char", "shakespeare_char, or text: any UTF-8 file at data_path"
    )
    data_path: str = _key("", "the text file (default for shakespeare_char: cache, then download)")
    data_dir: str = _key("", "where the prepared token arrays go (default: under data/)")
    # the machine
    device: str = _key("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    dtype: str = _key(
        "auto",
        "auto (bf16 on CUDA that has it, else fp16; fp32 on CPU/MPS), float32, bfloat16 or float16",
    )
    compile: bool = _key(False, "wrap the model in torch.compile")
    seed: int = _key(1337, "seed for initialisation, batches and dropout")
    # data shape
    batch_size: int = _key(12, "sequences per micro-batch (per process under torchrun)")
    block_size: int = _key(64, "context length in characters")
    # model
    n_layer: int = _key(4, "transformer blocks")
    n_head: int = _key(4, "attention heads per block")
    n_embd: int = _key(128, "channels of the residual stream")
    dropout: float = _key(0.0, "dropout probability")
    bias: bool = _key(True, "biases in Linear and LayerNorm layers")
    pos_embedding: str = _key("learned", "learned (GPT-2's position table) or rope (rotary)")
    # optimizer and schedule
    learning_rate: float = _key(1e-3, "peak learning rate")
    min_lr: float = _key(1e-4, "the rate after decay, and its floor")
    lr_schedule: str = _key("cosine", "constant, linear, cosine or wsd (warm-up, stable, decay)")
    warmup_iters: int = _key(100, "iterations of linear warm-up")
    lr_decay_iters: int | None = _key(None, "iteration where decay ends (default: max_iters)")
    cooldown_frac: float = _key(0.2, "wsd only: fraction of lr_decay_iters spent decaying")
    max_iters: int = _key(2000, "optimizer steps in the whole run")
    weight_decay: float = _key(0.1, "AdamW weight decay, on matrices only")
    beta1: float = _key(0.9, "AdamW beta1")
    beta2: float = _key(0.99, "AdamW beta2")
    grad_clip: float = _key(1.0, "clip the gradient norm to this (0: no clipping)")
    gradient_accumulation_steps: int = _key(
        1, "micro-batches per optimizer step, in total over all processes"
    )
    # evaluation and logging
    eval_interval: int = _key(250, "evaluate and checkpoint every this many iterations")
    eval_iters: int = _key(20, "batches per split in each evaluation")
    log_interval: int = _key(10, "iterations between log lines")
    sample_chars: int = _key(200, "characters of sample text written at each evaluation (0: none)")
    tensorboard: bool = _key(True, "write TensorBoard event files into out_dir")

    def __post_init__(self) -> None:
        def require(ok: bool, key: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"{key}: {message}, got {getattr(self, key)!r}")

        def one_of(key: str, choices: tuple[str, ...]) -> None:
            require(getattr(self, key) in choices, key, f"must be one of {', '.join(choices)}")

        one_of("dataset", DATASETS)
        require(
            self.dataset != "text" or bool(self.data_path),
            "data_path",
            "dataset 'text' needs a data_path",
        )
        require(
            self.device in DEVICES or _is_cuda_index(self.device),
            "device",
            "must be auto, cpu, cuda, cuda:N or mps",
        )
        one_of("dtype", DTYPES)
        one_of("pos_embedding", POS_EMBEDDINGS)
        one_of("lr_schedule", LR_SCHEDULES)
        for key in (
            "batch_size",
            "block_size",
            "n_layer",
            "n_head",
            "n_embd",
            "max_iters",
            "gradient_accumulation_steps",
            "eval_interval",
            "eval_iters",
            "log_interval",
        ):
            require(getattr(self, key) >= 1, key, "must be at least 1")
        require(
            self.n_embd % self.n_head == 0, "n_embd", f"must be divisible by n_head ({self.n_head})"
        )
        require(
            self.pos_embedding != "rope" or (self.n_embd // self.n_head) % 2 == 0,
            "pos_embedding",
            "rope needs an even head size n_embd / n_head",
        )
        require(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")
        require(self.learning_rate > 0, "learning_rate", "must be positive")
        require(
            0.0 <= self.min_lr <= self.learning_rate,
            "min_lr",
            f"must be between 0 and learning_rate ({self.learning_rate})",
        )
        require(self.warmup_iters >= 0, "warmup_iters", "must not be negative")
        require(
            self.decay_end >= self.warmup_iters,
            "lr_decay_iters" if self.lr_decay_iters is not None else "max_iters",
            f"must not be less than warmup_iters ({self.warmup_iters})",
        )
        require(0.0 <= self.cooldown_frac <= 1.0, "cooldown_frac", "must be in [0, 1]")
        require(self.weight_decay >= 0, "weight_decay", "must not be negative")
        require(0.0 <= self.beta1 < 1.0, "beta1", "must be in [0, 1)")
        require(0.0 <= self.beta2 < 1.0, "beta2", "must be in [0, 1)")
        require(self.grad_clip >= 0, "grad_clip", "must not be negative")
        require(self.sample_chars >= 0, "sample_chars", "must not be negative")

    @property
    def decay_end(self) -> int:
        """The iteration where the learning rate reaches min_lr."""
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(
            vocab_size=vocab_size,
            block_size=self.block_size,
            n_layer=self.n_layer,
            n_head=self.n_head,
            n_embd=self.n_embd,
            dropout=self.dropout,
            bias=self.bias,
            pos_embedding=self.pos_embedding,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_cuda_index(device: str) -> bool:
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()


KEYS = {f.name: f for f in fields(TrainConfig)}
_TYPES = typing.get_type_hints(TrainConfig)


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, KEYS, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    if _optional_inner(tp) is not None:
        return names[_optional_inner(tp)] + " or null"
    return names[tp]


def _optional_inner(tp: Any) -> Any | None:
    if isinstance(tp, types.UnionType) and type(None) in tp.__args__:
        return next(a for a in tp.__args__ if a is not type(None))
    return None


def coerce(key: str, value: Any, source: str) -> Any:
    """value (from YAML, or a command-line string) as the type of `key`, or a ConfigError."""
    if key not in KEYS:
        raise ConfigError(f"{source}: unknown key {key!r}{_did_you_mean(key)}")
    tp = _TYPES[key]
    from_cli = isinstance(value, str) and source == "command line"
    inner = _optional_inner(tp)
    if inner is not None:
        if value is None or (from_cli and value.lower() in ("none", "null")):
            return None
        tp = inner
    bad = ConfigError(f"{source}: {key} expects {_type_name(_TYPES[key])}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_cli and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    # Numbers. Strings are accepted because YAML reads 1e-3 (no dot) as a string.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise bad
    try:
        number = float(value)
    except ValueError:
        raise bad from None
    if not math.isfinite(number):
        raise bad
    if tp is int:
        if number != int(number):
            raise bad
        return int(number)
    return number


def build_config(values: dict[str, Any], source: str) -> TrainConfig:
    """A TrainConfig from defaults updated with values, each checked and coerced."""
    typed = {key: coerce(key, value, source) for key, value in values.items()}
    try:
        return TrainConfig(**typed)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def find_config_file(name: str) -> Path:
    """A config given as a path, or by name in configs/ (with or without .yaml)."""
    for candidate in (Path(name), CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    available = ", ".join(sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config file {name!r} not found; configs/ has: {available}")


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value, got {type(loaded).__name__}")
    return loaded


@dataclass(frozen=True)
class TrainArgs:
    """What the command line asked for."""

    config: TrainConfig
    config_name: str
    cli_values: dict[str, Any]  # the keys set on the command line, applied again on --resume
    resume: str | None  # None: a fresh run; "": out_dir/last.pt; else a checkpoint or run dir
    overwrite: bool


USAGE = "usage: train.py [--config NAME] [--resume [PATH]] [--overwrite] [--KEY VALUE ...]"


def help_text() -> str:
    lines = [
        USAGE,
        "",
        "Train a character-level GPT. Settings: defaults < the YAML config < these options.",
        "",
        f"  --config NAME      a YAML file: a path, or a name in configs/ ({DEFAULT_CONFIG})",
        "  --resume [PATH]    continue from out_dir/last.pt, or from a checkpoint or run directory",
        "  --overwrite        start afresh in an out_dir that already holds a run",
        "",
        "Every key, as --key VALUE or --key=VALUE (booleans also --key / --no-key):",
    ]
    for name, f in KEYS.items():
        text = f.metadata["help"]
        if "default" not in text:
            default = "null" if f.default is None else f.default
            text += f" [default: {str(default).lower() if isinstance(default, bool) else default}]"
        lines.append(f"  --{name:<28} {text}")
    return "\n".join(lines)


def parse_cli(argv: list[str]) -> tuple[dict[str, Any], str | None, str | None, bool]:
    """The command line as (key values, --config, --resume, --overwrite). Values stay strings."""
    values: dict[str, Any] = {}
    config_name = resume = None
    overwrite = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in ("-h", "--help"):
            print(help_text())
            sys.exit(0)
        if not arg.startswith("--"):
            raise ConfigError(f"command line: unexpected argument {arg!r}; options look like --key")
        name, has_value, value = arg[2:].partition("=")
        takes_value = i < len(argv) and not argv[i].startswith("--")
        if name == "overwrite":
            overwrite = True
        elif name == "resume":
            if has_value:
                resume = value
            elif takes_value:
                resume, i = argv[i], i + 1
            else:
                resume = ""
        elif name == "config":
            if not has_value and not takes_value:
                raise ConfigError("command line: --config needs a file name")
            config_name = value if has_value else argv[i]
            i += 0 if has_value else 1
        elif name.replace("-", "_") in KEYS:
            key = name.replace("-", "_")
            if has_value:
                values[key] = value
            elif takes_value:
                values[key], i = argv[i], i + 1
            elif _TYPES[key] is bool:
                values[key] = True  # --compile
            else:
                raise ConfigError(f"command line: --{key} needs a value")
        elif name.startswith(("no-", "no_")) and _TYPES.get(name[3:].replace("-", "_")) is bool:
            values[name[3:].replace("-", "_")] = False  # --no-compile
        else:
            raise ConfigError(f"command line: unknown option --{name}{_did_you_mean(name)}")
    return values, config_name, resume, overwrite


def parse_args(argv: list[str] | None = None) -> TrainArgs:
    cli_values, config_name, resume, overwrite = parse_cli(sys.argv[1:] if argv is None else argv)
    config_path = find_config_file(config_name or DEFAULT_CONFIG)
    yaml_values = {
        key: coerce(key, value, str(config_path)) for key, value in read_yaml(config_path).items()
    }
    cli_typed = {key: coerce(key, value, "command line") for key, value in cli_values.items()}
    values = {**yaml_values, **cli_typed}
    if not values.get("out_dir"):
        values["out_dir"] = str(Path("out") / config_path.stem)
    source = str(config_path) if not cli_values else f"{config_path} with the command line"
    return TrainArgs(
        config=build_config(values, source),
        config_name=config_path.stem,
        cli_values=cli_typed,
        resume=resume,
        overwrite=overwrite,
    )


def config_for_resume(
    saved: dict[str, Any], cli_values: dict[str, Any], run_dir: Path
) -> TrainConfig:
    """The configuration of a resumed run: the checkpoint's own, with the command line on top.
    The run stays in the directory it was resumed from unless --out_dir says otherwise."""
    for key in ARCHITECTURE_KEYS:
        if key in cli_values and cli_values[key] != saved.get(key):
            raise ConfigError(
                f"command line: {key} cannot change when resuming (the checkpoint has "
                f"{saved.get(key)!r}, the command line asks for {cli_values[key]!r})"
            )
    known = {key: value for key, value in saved.items() if key in KEYS}
    values = {**known, "out_dir": str(run_dir), **cli_values}
    return build_config(values, "checkpoint config with the command line")
