"""From train.py's command line to a run's config: `load_config(argv)`.

Settings are defaults < the YAML config file (a path, or a name in configs/) < the command line;
every option is a key of TrainConfig, and every value is read into its key's type here, once. A
resume names a run instead: its checkpoint's config, with the command line on top
(`config_for_resume`, called by training/rundir.py).
"""

from __future__ import annotations

import datetime
import re
import shlex
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.cli import Parser, did_you_mean, fields_of, parse_value
from infra.errors import ConfigError
from training.config import DATA_PATH_KEYS, FIXED_ON_RESUME, KEYS, TrainConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = "small.yaml"
_TYPES = typing.get_type_hints(TrainConfig)


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


def build_parser(shown: dict[str, Any] | None = None, source: str = "") -> Parser:
    """train.py's options: --config, --resume, --overwrite and one per key. `shown`: the values a
    config file sets, which --help then lists as that run's defaults."""
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
    return parser


def _given_config(argv: Sequence[str]) -> str | None:
    """The value of --config in argv, read before the full parse (the help text depends on it)."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.partition("=")[2]
    return None


def load_config(argv: Sequence[str] | None = None) -> TrainArgs:
    """The command line (sys.argv's when argv is None) and the config file it names, read and
    checked: a fresh run's whole config, or what a resume asks for (the checkpoint holds the rest:
    training/rundir.py's prepare_run)."""
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
    )


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
