"""From train()'s arguments, or train.py's command line, to a run's config: defaults < the YAML
file < the keys given (on resume, the checkpoint's config instead of the first two)."""

from __future__ import annotations

import datetime
import json
import re
import shlex
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.cli import Parser, did_you_mean, fields_of, parse_value
from infra.errors import ConfigError
from training.config import DATA_PATH_KEYS, FIXED_ON_RESUME, KEYS, TrainConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = "small.yaml"
SWEEP = "sweep"  # a config file's mapping of the keys a sweep varies to their values
SWEEP_FILE = "sweep.json"  # a sweep's plan, in its directory (training/sweep.py)
_TYPES = typing.get_type_hints(TrainConfig)


def find_config_file(name: str) -> Path:
    """A config given as a path, or by name in configs/ (with or without .yaml)."""
    for candidate in (Path(name), CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    available = ", ".join(sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config file {name!r} not found; configs/ has: {available}")


def read_config_file(path: Path) -> dict[str, Any]:
    """A config file's keys, each checked and read into its type."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    loaded = loaded or {}  # an empty file
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value, got {type(loaded).__name__}")
    varied = loaded.pop(SWEEP, None) or {}
    if not isinstance(varied, dict) or not all(isinstance(v, list) for v in varied.values()):
        raise ConfigError(f"{path}: sweep must be a mapping of key: [values], got {varied!r}")
    values = {key: coerce(key, value, str(path)) for key, value in loaded.items()}
    return {**values, SWEEP: read_sweep(varied, f"{path}: sweep")} if varied else values


def read_sweep(varied: dict[Any, list], source: str) -> dict[str, list]:
    """The values of each varied key, each read into the key's type: a grid of variants."""
    for key, values in varied.items():
        if not values or len(set(map(repr, values))) != len(values):
            raise ConfigError(f"{source}: {key} needs distinct values to vary, got {values!r}")
        if key in (SWEEP, "out_dir"):
            raise ConfigError(f"{source}: {key} cannot be varied")
    return {key: [coerce(key, v, source) for v in values] for key, values in varied.items()}


def default_out_dir(config_path: Path, file_values: dict[str, Any]) -> str:
    """out_dir when the command line gives none: the file's, else out/<config name>."""
    return file_values.get("out_dir") or str(Path("out") / config_path.stem)


AUTO_OUT_DIR = "auto"


def auto_out_dir(config_path: Path, settings: dict[str, Any], now: datetime.datetime) -> str:
    """out/<config>-<the settings given beside the config file>-<date and time>: a new directory
    for every run, whose name says what it tried (`--out_dir auto`)."""
    changed = "".join(
        f"-{key}{re.sub(r'[^A-Za-z0-9.]', '', str(value))}"
        for key, value in settings.items()
        if key != "out_dir"
    )
    return str(Path("out") / f"{config_path.stem}{changed}-{now:%Y%m%d-%H%M%S}")


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
        "--sweep",
        action="append",
        metavar="KEY=V1,V2",
        help="train a variant for each value of KEY (repeat for a grid of several keys), each "
        "in a run directory of its own under out_dir",
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


@dataclass(frozen=True)
class TrainArgs:
    """What a run was asked for: train()'s arguments, read and checked."""

    config: TrainConfig | None  # the run's config; None on resume (the checkpoint holds it)
    config_name: str
    settings: dict[str, Any]  # the keys given beside the config file, applied again on resume
    resume: str | None  # None: a fresh run; else the checkpoint or run directory to continue
    overwrite: bool
    sweep: dict[str, list] = field(default_factory=dict)  # the keys a sweep varies: their values
    hparams: tuple[str, ...] = ()  # the keys TensorBoard's HPARAMS compares (none given: all)


def load_config(
    config: str | Path | None = None,
    resume: str | Path | bool | None = None,
    overwrite: bool = False,
    **settings: Any,
) -> TrainArgs:
    """train()'s arguments, read and checked: the config file with `settings` on top, or what a
    resume asks for (prepare_run reads the rest from its checkpoint). Lists among the settings,
    and the file's `sweep:`, are a sweep's values (config holds their first). A mistake is a
    ConfigError, before any work."""
    varied = {k: v for k, v in settings.items() if isinstance(v, list | tuple)}
    sweep = read_sweep(varied, "train()")
    settings = {k: coerce(k, v, "train()") for k, v in settings.items() if k not in varied}
    config_path, file_values = Path(DEFAULT_CONFIG), {}
    if config is not None or not resume:
        config_path = find_config_file(str(config or DEFAULT_CONFIG))
        file_values = read_config_file(config_path)
        sweep = {**file_values.pop(SWEEP, {}), **sweep}
    name = config_path.stem
    default_dir = default_out_dir(config_path, file_values) + ("-sweep" if sweep else "")
    if not resume:
        values = {**file_values, **settings, **{key: found[0] for key, found in sweep.items()}}
        values["out_dir"] = values.get("out_dir") or default_dir
        if values["out_dir"] == AUTO_OUT_DIR:
            values["out_dir"] = auto_out_dir(
                config_path, {**settings, **sweep}, datetime.datetime.now()
            )
        source = f"{config_path} with the settings given" if settings or sweep else str(config_path)
        return TrainArgs(build_config(values, source), name, settings, None, overwrite, sweep)
    if settings.get("out_dir") == AUTO_OUT_DIR:
        raise ConfigError(
            "out_dir auto names a new run; to continue one, give its directory: --resume out/NAME"
        )
    if resume is True:  # the run (or sweep) in out_dir
        resume = settings.get("out_dir") or default_dir
    if (Path(resume) / SWEEP_FILE).is_file():  # a sweep's directory: its plan says what varies
        sweep = {key: [] for key in read_plan(Path(resume))["varied"]}
    return TrainArgs(None, name, settings, str(resume), overwrite, sweep)


def read_plan(sweep_dir: Path) -> dict[str, Any]:
    """A sweep's plan: the keys it varies, and each variant's name and config."""
    try:
        plan = json.loads((sweep_dir / SWEEP_FILE).read_text())
        if isinstance(plan["varied"], list) and isinstance(plan["variants"], dict):
            return plan
    except (OSError, ValueError, KeyError, TypeError):
        pass
    raise ConfigError(f"{sweep_dir / SWEEP_FILE} is not a sweep's plan that train.py wrote")


def parse_command_line(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """train.py's command line (sys.argv's when argv is None) as train()'s arguments; --help
    lists every key with the value the config named before it would use."""
    argv = list(sys.argv[1:] if argv is None else argv)
    first = Parser("", add_help=False)  # --config alone, before the rest: --help depends on it
    first.add_argument("--config")
    given = first.parse_known_args(argv)[0].config
    shown, source = None, ""
    if given is not None or "--resume" not in argv:
        config_path = find_config_file(given or DEFAULT_CONFIG)
        file_values = read_config_file(config_path)
        shown = {**file_values, "out_dir": default_out_dir(config_path, file_values)}
        source = config_path.name
    namespace = build_parser(shown, source).parse(argv)
    resume = True if namespace.resume == "" else namespace.resume
    settings = fields_of(TrainConfig, namespace)
    for given_sweep in namespace.sweep or []:  # KEY=V1,V2,...: the values, as strings
        key, equals, values = given_sweep.partition("=")
        if not equals or not values or key in settings:
            raise ConfigError(
                f"command line: --sweep {given_sweep}: give KEY=V1,V2,... for a key not set "
                "by another option"
            )
        settings[key] = values.split(",")
    return dict(config=given, resume=resume, overwrite=namespace.overwrite, **settings)


def coerce(key: Any, value: Any, source: str) -> Any:
    """value (from YAML, Python or a command-line string) as `key`'s type, or a ConfigError."""
    if not isinstance(key, str):  # YAML reads `1: 2` as the number 1
        raise ConfigError(f"{source}: unknown key {key!r}: keys are names, like n_layer")
    if key not in KEYS:
        raise ConfigError(f"{source}: unknown key {key!r}{did_you_mean(key, KEYS)}")
    return parse_value(key, _TYPES[key], value, source)


def build_config(values: dict[str, Any], source: str) -> TrainConfig:
    """A TrainConfig from values (from YAML, Python or a checkpoint); a mistake names the source."""
    typed = {key: coerce(key, value, source) for key, value in values.items()}
    try:
        return TrainConfig(**typed)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def config_for_resume(
    saved: dict[str, Any], settings: dict[str, Any], run_dir: Path
) -> tuple[TrainConfig, list[str]]:
    """A resumed run's config (the checkpoint's, the settings given on top; out_dir: the one it
    resumes, unless given) and notes for the user. A new max_iters keeps the schedule's old end
    (unless lr_decay_iters is given): stretching it would jump a finished run's rate back up."""
    for key in FIXED_ON_RESUME:
        if key in settings and settings[key] != saved.get(key):
            raise ConfigError(
                f"{key} cannot change when resuming (the checkpoint has {saved.get(key)!r}, "
                f"{settings[key]!r} was given)"
            )
    known = {key: value for key, value in saved.items() if key in KEYS}
    for key in DATA_PATH_KEYS:  # never followed from a checkpoint: the user names them
        named = known.pop(key, "")
        if named and key not in settings:
            raise ConfigError(
                f"the run read its data with {key} {str(named)!r}; a resume takes paths only "
                f"from you: add --{key} {shlex.quote(str(named))} (in Python, {key}=...)"
            )
    values = {**known, "out_dir": str(run_dir), **settings}
    notes = []
    old_iters, new_iters = known.get("max_iters"), settings.get("max_iters")
    if (
        new_iters is not None
        and new_iters != old_iters
        and "lr_decay_iters" not in settings
        and known.get("lr_decay_iters") is None
    ):
        values["lr_decay_iters"] = old_iters
        notes.append(
            f"note: max_iters {old_iters} -> {new_iters} keeps the learning-rate schedule that "
            f"was running: its decay still ends at iteration {old_iters}, then stays at its "
            "floor; give --lr_decay_iters N to change that"
        )
    return build_config(values, "checkpoint config with the settings given"), notes
