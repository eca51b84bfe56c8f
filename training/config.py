"""The training configuration: one frozen dataclass, filled as defaults < YAML file < command line.

`TrainConfig` inherits `GPTConfig`: its model keys (n_layer, n_embd, pos_embedding, ...) are the
model config's own fields, with the model's defaults, help and checks; the keys below are
training's. Keys are flat and use nanoGPT's names. Every mistake (an unknown key, a wrong type,
malformed YAML, an impossible value) is a ConfigError whose one-line message names the key, raised
before any work starts.
"""

from __future__ import annotations

import datetime
import re
import shlex
import sys
import typing
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from data import DATASETS
from infra.cli import Parser, check_choices, did_you_mean, fields_of, option, parse_value
from infra.device import DEFAULT_DIST_TIMEOUT, DTYPE_NAMES, is_device_name
from infra.errors import ConfigError
from model import GPTConfig

MAX_DIST_TIMEOUT = 365 * 24 * 3600.0  # torch keeps the timeout as a timedelta: it must fit
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = "small.yaml"
OPTIMIZERS = ("adamw", "muon")
LR_SCHEDULES = ("constant", "linear", "cosine", "wsd")  # training/optim.py: lr_multiplier


@dataclass(frozen=True)
class TrainConfig(GPTConfig):
    """A run's settings: GPTConfig's model keys, then these. vocab_size is the one model field that
    is not a key: it comes from the data (`model_config`)."""

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
    learning_rate: float = option(1e-3, "peak learning rate (of AdamW)")
    min_lr: float = option(1e-4, "the rate after decay, and its floor")
    lr_schedule: str = option(
        "cosine",
        "constant, linear, cosine or wsd (warm-up, stable, decay)",
        choices=LR_SCHEDULES,
    )
    warmup_iters: int = option(100, "iterations of linear warm-up")
    lr_decay_iters: int | None = option(None, "iteration where decay ends (default: max_iters)")
    cooldown_frac: float = option(0.2, "wsd only: fraction of lr_decay_iters spent decaying")
    max_iters: int = option(2000, "optimizer steps in the whole run")
    weight_decay: float = option(0.1, "weight decay, on matrices only")
    beta1: float = option(0.9, "AdamW beta1")
    beta2: float = option(0.99, "AdamW beta2")
    muon_lr: float = option(0.02, "muon only: Muon's peak learning rate, on the same schedule")
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
    probe_text: str = option(
        "", "text whose attention maps TensorBoard shows (default: a line of the validation split)"
    )
    tensorboard: bool = option(True, "write TensorBoard event files into out_dir")

    def __post_init__(self) -> None:
        try:
            super().__post_init__()  # the model's keys, checked by the model's config
        except ValueError as e:
            raise ConfigError(str(e)) from None

        def require(ok: bool, key: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"{key}: {message}, got {getattr(self, key)!r}")

        check_choices(self)  # dataset, dtype, lr_schedule (the model's were checked above)
        require(
            self.dataset != "text" or bool(self.data_path),
            "data_path",
            "dataset 'text' needs a data_path",
        )
        require(is_device_name(self.device), "device", "must be auto, cpu, cuda, cuda:N or mps")
        for key in (
            "batch_size",
            "max_iters",
            "gradient_accumulation_steps",
            "eval_interval",
            "eval_iters",
            "log_interval",
        ):
            require(getattr(self, key) >= 1, key, "must be at least 1")
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
        require(self.muon_lr > 0, "muon_lr", "must be positive")
        require(0.0 <= self.muon_momentum < 1.0, "muon_momentum", "must be in [0, 1)")
        require(self.grad_clip >= 0, "grad_clip", "must not be negative")
        require(
            0 < self.dist_timeout <= MAX_DIST_TIMEOUT,
            "dist_timeout",
            f"must be positive and at most {MAX_DIST_TIMEOUT:,.0f} seconds (a year)",
        )
        require(0 <= self.seed < 2**63, "seed", "must be between 0 and 2**63 - 1")
        require(self.sample_chars >= 0, "sample_chars", "must not be negative")
        require(self.loss_interval >= 0, "loss_interval", "must not be negative")
        require(self.exact_max_chars >= 0, "exact_max_chars", "must not be negative")
        require(
            len(self.probe_text) <= self.block_size,
            "probe_text",
            f"must be at most block_size ({self.block_size}) characters",
        )

    @property
    def decay_end(self) -> int:
        """The iteration where the learning rate reaches min_lr."""
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
_TYPES = typing.get_type_hints(TrainConfig)


def coerce(key: Any, value: Any, source: str) -> Any:
    """value (from YAML, or a command-line string) as the type of `key`, or a ConfigError."""
    if not isinstance(key, str):  # YAML reads `1: 2` as the number 1
        raise ConfigError(f"{source}: unknown key {key!r}: keys are names, like n_layer")
    if key not in KEYS:
        raise ConfigError(f"{source}: unknown key {key!r}{did_you_mean(key, KEYS)}")
    return parse_value(key, _TYPES[key], value, source)


def build_config(values: dict[str, Any], source: str) -> TrainConfig:
    """A TrainConfig from defaults updated with raw values (from YAML or a checkpoint), each
    coerced to its key's type once, here."""
    return checked_config(
        {key: coerce(key, value, source) for key, value in values.items()}, source
    )


def checked_config(typed: dict[str, Any], source: str) -> TrainConfig:
    """A TrainConfig from values already of their keys' types (a config file's, read by
    read_config_file, and the command line's, converted by its parser), checked by
    TrainConfig itself."""
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


def read_config_file(config_path: Path) -> dict[str, Any]:
    """A config file's keys, each checked and coerced to its type."""
    return {
        key: coerce(key, value, str(config_path)) for key, value in read_yaml(config_path).items()
    }


def default_out_dir(config_path: Path, file_values: dict[str, Any]) -> str:
    """out_dir when the command line gives none: the file's, else out/<config name>."""
    return file_values.get("out_dir") or str(Path("out") / config_path.stem)


def add_config_options(
    parser: Parser, shown: dict[str, Any] | None = None, source: str = ""
) -> None:
    """--config NAME and one option per key, for train.py and the benchmarks that train. `shown`:
    the values a config file sets, which --help then lists as that run's defaults."""
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="NAME",
        help=f"a YAML file: a path, or a name in configs/ [default: {DEFAULT_CONFIG}]",
    )
    keys = parser.add_argument_group(
        "settings", "every key of a config file; given here, it overrides the file"
    )
    parser.add_fields(
        TrainConfig, defaults=False, group=keys, only=KEYS, shown=shown, shown_source=source
    )


def resolve_config(config_name: str, cli_values: dict[str, Any]) -> tuple[TrainConfig, str]:
    """The config file's values with cli_values (already typed) on top; out_dir defaults to
    out/<config name>. Returns the config and the config file's name."""
    config_path = find_config_file(config_name)
    return _config_from(config_path, read_config_file(config_path), cli_values), config_path.stem


AUTO_OUT_DIR = "auto"


def auto_out_dir(config_path: Path, cli_values: dict[str, Any], now: datetime.datetime) -> str:
    """out/<config>-<the options changed on the command line>-<date and time>: a new directory
    for every run, whose name says what it tried (`--out_dir auto`)."""
    changed = "".join(
        f"-{key}{re.sub(r'[^A-Za-z0-9.]', '', str(value))}"
        for key, value in cli_values.items()
        if key != "out_dir"
    )
    return str(Path("out") / f"{config_path.stem}{changed}-{now:%Y%m%d-%H%M%S}")


def _config_from(
    config_path: Path, file_values: dict[str, Any], cli_values: dict[str, Any]
) -> TrainConfig:
    values = {**file_values, **cli_values}
    values["out_dir"] = values.get("out_dir") or default_out_dir(config_path, file_values)
    if values["out_dir"] == AUTO_OUT_DIR:
        values["out_dir"] = auto_out_dir(config_path, cli_values, datetime.datetime.now())
    source = str(config_path) if not cli_values else f"{config_path} with the command line"
    return checked_config(values, source)


@dataclass(frozen=True)
class TrainArgs:
    """What the command line asked for."""

    config: TrainConfig | None  # the run's config; None on --resume (the checkpoint holds it)
    config_name: str
    cli_values: dict[str, Any]  # the keys set on the command line, applied again on --resume
    resume: str | None  # None: a fresh run; else the checkpoint or run directory to continue
    overwrite: bool
    config_given: str | None = None  # --config as typed, if it was


def build_parser(shown: dict[str, Any] | None = None, source: str = "") -> Parser:
    parser = Parser(
        "Train a character-level GPT. Settings: defaults < the YAML config < options.",
        usage="train.py [--config NAME] [--resume [PATH]] [--overwrite] [--KEY VALUE ...]",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="continue the run in out_dir, or the run in a checkpoint or run directory PATH "
        "(its last.pt); the run's own config is used, with options given here on top",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an out_dir that already holds a run (its checkpoints and "
        "TensorBoard logs are deleted once the new run has checked its config and data)",
    )
    add_config_options(parser, shown, source)
    return parser


def _given_config(argv: Sequence[str]) -> str | None:
    """The value of --config in argv, read before the full parse (the help text depends on it)."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.partition("=")[2]
    return None


def parse_args(argv: Sequence[str] | None = None) -> TrainArgs:
    argv = list(sys.argv[1:] if argv is None else argv)
    given = _given_config(argv)
    config_path = file_values = None
    if given is not None or "--resume" not in argv:
        config_path = find_config_file(given or DEFAULT_CONFIG)
        file_values = read_config_file(config_path)
    shown = None
    if file_values is not None:
        shown = {**file_values, "out_dir": default_out_dir(config_path, file_values)}
    namespace = build_parser(shown, config_path.name if config_path else "").parse(argv)
    cli_values = fields_of(TrainConfig, namespace)
    config_name = config_path.stem if config_path else Path(DEFAULT_CONFIG).stem
    config, resume = None, namespace.resume
    if resume is None:
        config = _config_from(config_path, file_values, cli_values)
    elif cli_values.get("out_dir") == AUTO_OUT_DIR:
        raise ConfigError(
            "command line: --out_dir auto names a new run; to continue one, give its directory: "
            "--resume out/NAME"
        )
    elif resume == "":  # the run in out_dir
        if cli_values.get("out_dir"):
            resume = cli_values["out_dir"]
        elif config_path is not None:
            resume = default_out_dir(config_path, file_values)
        else:
            resume = str(Path("out") / config_name)
    return TrainArgs(
        config=config,
        config_name=config_name,
        cli_values=cli_values,
        resume=resume,
        overwrite=namespace.overwrite,
        config_given=given,
    )


def config_for_resume(
    saved: dict[str, Any], cli_values: dict[str, Any], run_dir: Path
) -> tuple[TrainConfig, list[str]]:
    """The configuration of a resumed run: the checkpoint's own, with the command line on top,
    and notes for the user on what the resume keeps. The run stays in the directory it was
    resumed from unless --out_dir says otherwise.

    A longer (or shorter) max_iters keeps the learning-rate schedule that was running: its
    decay still ends where it did (lr_decay_iters is pinned to the old end), unless the command
    line sets lr_decay_iters itself. Stretching the schedule would jump the rate of a finished
    run from min_lr back up towards its peak."""
    for key in FIXED_ON_RESUME:
        if key in cli_values and cli_values[key] != saved.get(key):
            raise ConfigError(
                f"command line: {key} cannot change when resuming (the checkpoint has "
                f"{saved.get(key)!r}, the command line asks for {cli_values[key]!r})"
            )
    known = {key: value for key, value in saved.items() if key in KEYS}
    for key in DATA_PATH_KEYS:  # never followed from a checkpoint: the user names them
        named = known.pop(key, "")
        if named and key not in cli_values:
            raise ConfigError(
                f"command line: the run read its data with {key} {str(named)!r}; a resume takes "
                f"paths only from you: add --{key} {shlex.quote(str(named))}"
            )
    values = {**known, "out_dir": str(run_dir), **cli_values}
    notes = []
    old_iters, new_iters = known.get("max_iters"), cli_values.get("max_iters")
    if (
        new_iters is not None
        and new_iters != old_iters
        and "lr_decay_iters" not in cli_values
        and known.get("lr_decay_iters") is None
    ):
        values["lr_decay_iters"] = old_iters
        notes.append(
            f"note: max_iters {old_iters} -> {new_iters} keeps the learning-rate schedule that "
            f"was running: its decay still ends at iteration {old_iters} (then min_lr "
            f"{known.get('min_lr')}); give --lr_decay_iters N to change that"
        )
    return build_config(values, "checkpoint config with the command line"), notes
