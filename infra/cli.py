"""One command-line style for every script: argparse, generated from a dataclass's fields.

A field's `metadata["help"]` is its help text, `metadata["choices"]` its allowed values. Every
field becomes `--name VALUE` (or `--name=VALUE`); a boolean also takes `--name`, `--no-name` and
`--name false`; a tuple takes several values; a `metadata["positional"]` field takes no flag."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import math
import os
import sys
import types
import typing
from argparse import SUPPRESS
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from infra.errors import ConfigError


def option(default: Any = dataclasses.MISSING, help: str = "", **metadata: Any) -> Any:
    """A dataclass field that is also a command-line option: its default and help text."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(the type without `| None`, whether None is allowed)."""
    if isinstance(tp, types.UnionType) and type(None) in tp.__args__:
        return next(a for a in tp.__args__ if a is not type(None)), True
    return tp, False


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_value(key: str, tp: Any, value: Any, source: str) -> Any:
    """value (typed, from YAML; or a string, from the command line) as type tp, or a ConfigError
    that names the key and the source."""
    tp, optional = _base_type(tp)
    word = value.lower() if isinstance(value, str) else None
    if optional and (value is None or word in ("none", "null") or (tp is bool and word == "auto")):
        return None  # auto: a choice left to the program, which null says too
    tp = str if tp is Path else tp
    unset = " or auto" if optional and tp is bool else " or null" if optional else ""
    bad = ConfigError(f"{source}: {key} expects {_TYPE_NAMES[tp]}{unset}, got {value!r}")
    if tp is bool and (isinstance(value, bool) or word in _TRUE + _FALSE):
        return value if isinstance(value, bool) else word in _TRUE
    if tp is str and isinstance(value, str | os.PathLike):  # a path given from Python too
        return os.fspath(value)
    if tp in (bool, str):
        raise bad
    # Numbers. Strings are accepted from YAML too, because YAML reads 1e-3 (no dot) as a string.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise bad
    try:
        number = float(value)
    except ValueError:
        raise bad from None
    if not math.isfinite(number) or (tp is int and number != int(number)):
        raise bad
    return int(number) if tp is int else number


class Parser(argparse.ArgumentParser):
    """argparse, with every mistake a one-line ConfigError instead of usage text and exit 2, no
    abbreviations (`--lr` is not `--lr_schedule`), and a did-you-mean for unknown options."""

    def __init__(self, description: str, **kwargs: Any) -> None:
        # `python -m data --help` says so, not `__main__.py`
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if spec is not None and spec.name.endswith(".__main__"):
            kwargs.setdefault("prog", f"python -m {spec.name.removesuffix('.__main__')}")
        super().__init__(description=description, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(f"command line: {message}")

    def parse(self, argv: Sequence[str] | None) -> argparse.Namespace:
        """Parse argv. An option may be spelt with dashes for underscores (`--max-iters 5`,
        `--no-kv-cache`): each is read as the option it spells."""
        argv = list(sys.argv[1:] if argv is None else argv)
        spellings = {_canonical(o): o for a in self._actions for o in a.option_strings}
        for i, arg in enumerate(argv):
            if arg == "--":
                break
            name, eq, value = arg.partition("=")
            if name.startswith("--") and name not in spellings.values():
                argv[i] = spellings.get(_canonical(name), name) + eq + value
        namespace, unknown = self.parse_known_args(argv)
        for arg in unknown:
            if arg.startswith("-"):
                name = arg.lstrip("-").partition("=")[0]
                long = [o[2:] for o in spellings.values() if o[:2] == "--" and o[:5] != "--no-"]
                suggestion = did_you_mean(_canonical(name), map(_canonical, long))  # --no_X shown
                if "-" in name:  # answer in the user's own spelling: dashes work as well
                    suggestion = suggestion.replace("_", "-")
                raise ConfigError(f"command line: unknown option --{name}{suggestion}")
            raise ConfigError(f"command line: unexpected argument {arg!r}")
        return namespace

    def add_fields(
        self, cls: type, defaults: bool = True, group: argparse._ArgumentGroup | None = None,
        only: Iterable[str] | None = None, shown: dict[str, Any] | None = None,
        shown_source: str = "",
    ) -> None:  # fmt: skip
        """One option per field of the dataclass cls that has help (or per field named in only).
        defaults=False leaves an option not given out of the result, so a config file's value can
        stand; --help lists `shown` values instead of defaults (a config file's: shown_source)."""
        hints = typing.get_type_hints(cls)
        target = group or self
        for f in dataclasses.fields(cls):
            if "help" not in f.metadata or (only is not None and f.name not in only):
                continue
            tp, _ = _base_type(hints[f.name])
            many = typing.get_origin(tp) is tuple
            item_type = typing.get_args(tp)[0] if many else hints[f.name]
            required = f.default is dataclasses.MISSING
            kwargs: dict[str, Any] = dict(
                type=functools.partial(parse_value, f.name, item_type, source="command line"),
                help=_help_text(f, shown or {}, shown_source),
                default=f.default if defaults and not required else SUPPRESS,
                nargs="+" if many else None,
            )
            if f.metadata.get("positional"):
                target.add_argument(f.name, metavar=f.name.upper(), **kwargs)
                continue
            if "choices" in f.metadata:
                kwargs["metavar"] = "{" + ",".join(f.metadata["choices"]) + "}"
            if tp is bool:
                kwargs.update(nargs="?", const=True, metavar="BOOL")
            target.add_argument(f"--{f.name}", dest=f.name, required=required, **kwargs)
            if tp is bool:
                negated = dict(dest=f.name, action="store_false", default=SUPPRESS, help=SUPPRESS)
                target.add_argument(f"--no-{f.name}", f"--no_{f.name}", **negated)


def _canonical(option_name: str) -> str:
    """An option's name with every dash after the leading ones read as an underscore."""
    stripped = option_name.lstrip("-")
    return option_name[: len(option_name) - len(stripped)] + stripped.replace("-", "_")


def _help_text(f: dataclasses.Field, shown: dict[str, Any], source: str) -> str:
    text = f.metadata["help"].replace("%", "%%")
    if f.name in shown:
        value, origin = shown[f.name], f", from {source}" if source else ""
    elif f.default is dataclasses.MISSING or "default" in text:
        return text
    else:
        value, origin = f.default, ""
    words = "null" if value is None else str(value).lower() if isinstance(value, bool) else value
    words = str(words).replace("%", "%%")
    return f"{text} [default: {words}{origin}]" if words != "" else text


def read_text_file(flag: str, path: str) -> str:
    """The UTF-8 text of a file named on the command line by `flag`, or a one-line ConfigError."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"{flag} {file} does not exist")
    if not file.is_file():
        raise ConfigError(f"{flag} {file} is not a file")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{flag} {file} is not UTF-8 text") from None


def fields_of(cls: type, namespace: argparse.Namespace) -> dict[str, Any]:
    """The values in namespace that are fields of cls (tuples for the fields that take several)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(namespace).items() if k in names}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def parse_into(cls: type, argv: Sequence[str] | None, description: str) -> Any:
    """A dataclass instance from the command line: the whole parse of a script whose options are
    exactly cls's fields (whose own checks use `require`)."""
    parser = Parser(description)
    parser.add_fields(cls)
    options = cls(**fields_of(cls, parser.parse(argv)))
    check_choices(options)
    return options


def require(ok: bool, options: Any, key: str, message: str) -> None:
    """A ConfigError naming the key and its value in options (a config), unless ok."""
    if not ok:
        raise ConfigError(f"{key}: {message}, got {getattr(options, key)!r}")


def check_choices(options: Any) -> None:
    """A ConfigError naming the first field of options whose value is not in its choices."""
    for f in dataclasses.fields(options):
        choices, value = f.metadata.get("choices"), getattr(options, f.name)
        if choices and value not in choices:
            raise ConfigError(f"{f.name}: must be one of {', '.join(choices)}, got {value!r}")
