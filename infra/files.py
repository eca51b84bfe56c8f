"""Files that are never half-written, and a run directory that has one owner at a time."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from infra.errors import UserError

try:
    import fcntl  # POSIX: Linux, macOS
except ImportError:  # Windows: runs are not locked there
    fcntl = None

LOCK_NAME = ".lock"
TEMPORARY_SUFFIX = ".tmp"  # write_atomic's files: .NAME.PID.tmp


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside path, flush it to disk, then rename it over path:
    a reader, or a crash, sees the old file or the new one, never part of one. Used for prepared
    data, checkpoints and saved configs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # the pid in the name: ranks never share one
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")
    try:
        write(tmp)
        _fsync(tmp)  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except OSError as e:  # name the file the user knows, not the temporary one
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename itself durable
        _fsync(path.parent)


class RunDirError(UserError):
    """A run directory that cannot be used: a file, not creatable, or held by a live run."""


def make_run_dir(path: Path) -> None:
    """Create path (and its parents) as a directory, or say in words why it cannot be one."""
    for parent in (path, *path.parents):
        if os.path.exists(parent) and not os.path.isdir(parent):  # False where it cannot be
            what = "out_dir" if parent == path else f"out_dir {path}: its parent"
            raise RunDirError(f"{what} {parent} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create out_dir {path}: {e.strerror or e}") from None


class RunLock:
    """An exclusive lock on a run directory, held for as long as this process lives.

    It is an flock(2) on `out_dir/.lock`: the kernel releases it when the process ends in any way
    (exit, crash, SIGKILL, power loss), so a killed run never blocks the next one. The file holds
    the owner's pid, host and command, only to name it in the refusal."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self._file = None

    def acquire(self) -> None:
        if fcntl is None:
            return
        file = open(self.path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            owner = file.read().strip() or "another process"
            file.close()
            raise RunDirError(
                f"{self.path.parent} is in use by a run that is still going ({owner}); "
                "wait for it, stop it, or give another --out_dir"
            ) from None
        file.seek(0)
        file.truncate()
        command = " ".join(Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv))
        file.write(f"pid {os.getpid()} on {socket.gethostname()}: {command}\n")
        file.flush()
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the flock
            self._file = None
