"""What a user's mistake is, and how every script reports it (every `main` runs through `run_main`):
a `UserError`, one line that says what and what to do, and its exit code. Anything else is a bug
and keeps its traceback."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO


class UserError(Exception):
    """A problem the user can fix (a bad option, a missing file, a device this machine lacks)."""

    exit_code = 1
    label = "error"


class ConfigError(UserError):
    """A mistake in an option, a config file or a value: one line that names the key."""

    exit_code = 2
    label = "config error"


class DataError(UserError):
    """Data unusable as given: a missing file, a corrupt download, an unknown character."""


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable or not one of ours."""


class DeviceError(UserError):
    """The requested device or precision is not available on this machine."""


class RunDirError(UserError):
    """A run directory that is a file, not creatable, held by a live run, or holding a link where
    a run's or the data's own file or folder should be (none is ever followed: see refuse_link)."""


def first_line(error: BaseException, limit: int) -> str:
    """The first line of error's message, at most limit characters (its type if it has none)."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__


def mute(stream: TextIO) -> None:
    """Send what is still written to stream to /dev/null: its reader is gone (a closed pipe or
    terminal), so a last flush prints no second error and a run goes on (Python's SIGPIPE note)."""
    with contextlib.suppress(OSError, ValueError):  # no file descriptor (a test's capture)
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def run_main(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None,
    prog: str | None = None, prefix: Callable[[], str] = lambda: "",
) -> int:  # fmt: skip
    """main(argv)'s exit code, with a UserError as `prog: error: message` on stderr, Ctrl-C as
    exit 130 and a closed output pipe (`python sample.py ... | head`) as a quiet exit 1."""
    prog = prog or os.path.basename(sys.argv[0]) or "python"
    try:
        return main(argv) or 0
    except UserError as e:
        label = f"{e.label}: " if e.label else ""
        _say(f"{prefix()}{prog}: {label}{e}")
        return e.exit_code
    except KeyboardInterrupt:
        _say(f"\n{prefix()}{prog}: interrupted")
        return 130
    except BrokenPipeError:
        mute(sys.stdout)
        return 1
    except OSError as e:  # a full disk, a file that cannot be written: the machine, not the code
        _say(f"{prefix()}{prog}: error: {describe_os_error(e)}")
        return 1


def _say(line: str) -> None:
    """One line on stderr, if anyone still reads it."""
    with contextlib.suppress(OSError):
        print(line, file=sys.stderr)


def describe_os_error(e: OSError) -> str:
    """An OSError in words a user acts on: what happened, and to which file."""
    if e.errno == errno.ENOSPC:
        where = f" writing {e.filename}" if e.filename else ""
        return f"disk full (no space left on device){where}"
    return f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
