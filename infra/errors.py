"""What a user's mistake is, and how every script reports it.

Every error a user can see is defined here, and imported from here. A `UserError` is a problem
the user can fix (a bad option, a missing file, a device this machine lacks): its message is one
line that says what and what to do, and it carries the exit code. Anything else that escapes is a
bug and keeps its traceback. Every script's `main` runs through `run_main`, which prints a
UserError as one line on stderr, exits with its code, and is quiet when the reader of its output
has gone away (`python sample.py ... | head`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Callable, Sequence


class UserError(Exception):
    """A problem with what the user asked for or gave; `exit_code` is the script's exit status."""

    exit_code = 1
    label = "error"


class ConfigError(UserError):
    """A mistake in an option, a config file or a value: one line that names the key."""

    exit_code = 2
    label = "config error"


class DataError(UserError):
    """The data cannot be used as given (a missing file, a corrupt download, an unknown
    character); the message says why and what to do."""


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable or not one of ours."""


class DeviceError(UserError):
    """The requested device or precision is not available on this machine."""


class RunDirError(UserError):
    """A run directory that cannot be used: a file, not creatable, held by a live run, or holding
    a symbolic link where a run's or the data's own file or folder should be (the project never
    writes, reads or deletes through one, so nothing outside those folders is touched)."""


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of a closed pipe does not
    print a second error (the Python documentation's recipe for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):  # stdout may have no file descriptor
        os.dup2(devnull, sys.stdout.fileno())


def run_main(
    main: Callable[[Sequence[str] | None], int | None],
    argv: Sequence[str] | None = None,
    prog: str | None = None,
    prefix: Callable[[], str] = lambda: "",
) -> int:
    """main(argv)'s exit code, with a UserError as `prog: error: message` on stderr, Ctrl-C as
    exit 130 and a closed output pipe as a quiet exit 1."""
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
        _silence_stdout()
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
    what = "disk full (no space left on device)" if e.errno == errno.ENOSPC else e.strerror
    where = f" writing {e.filename}" if e.errno == errno.ENOSPC and e.filename else ""
    if e.errno != errno.ENOSPC and e.filename:
        where = f": {e.filename}"
    return f"{what or e}{where}"
