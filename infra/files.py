"""Files that are never half-written, and a run directory that has one owner at a time."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from infra.errors import RunDirError

try:
    import fcntl  # POSIX: Linux, macOS
except ImportError:  # Windows: runs are not locked there
    fcntl = None

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)  # POSIX; Windows has no such links to fear here
LOCK_NAME = ".lock"
TEMPORARY_SUFFIX = ".tmp"  # write_atomic's files: .NAME.PID.tmp


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def refuse_link(path: Path) -> None:
    """A RunDirError where path is a symbolic link (a missing path is fine)."""
    if path.is_symlink():
        raise RunDirError(f"{path} is a link (to {os.readlink(path)}); the project writes and "
                          "deletes only its own files, never through a link: remove the link, "
                          "or give another directory")  # fmt: skip


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside path, flush it to disk, then rename it over path:
    a reader, or a crash, sees the old file or the new one, never part of one; a link is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    refuse_link(path)
    # the pid in the name: ranks never share one
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}")
    try:
        tmp.unlink(missing_ok=True)  # a leftover, or a link: removed itself, never followed
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, 0o644))
        write(tmp)
        _fsync(tmp)  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except OSError as e:  # name the file the user knows, not the temporary one
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename itself durable
        _fsync(path.parent)


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
    """An exclusive flock(2) on `out_dir/.lock`, held for as long as this process lives: the kernel
    releases it when the process ends in any way (exit, crash, SIGKILL, power loss), so a killed
    run never blocks the next one. The file names the owner (pid, host, command) in the refusal."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_NAME
        self._file = None

    def acquire(self) -> None:
        if fcntl is None:
            return
        refuse_link(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o644)
        file = os.fdopen(fd, "r+")  # held open for the lock's lifetime
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
        print(f"pid {os.getpid()} on {socket.gethostname()}: {command}", file=file, flush=True)
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the flock
            self._file = None


class SetAside:
    """A run's files moved into a folder beside them instead of deleted: `--overwrite` sets the old
    run aside, restores it if the new run fails before its first checkpoint, and discards it after.
    A folder left by a killed process is settled at the next start (`settle`)."""

    def __init__(self, run_dir: Path, name: str = ".replaced") -> None:
        self.run_dir = run_dir
        self.folder = run_dir / name

    def move(self, files: list[Path]) -> None:
        """Move files (inside run_dir, none a link) into the folder, keeping their places."""
        for path in files:
            refuse_link(path)
        for path in files:
            target = self.folder / path.relative_to(self.run_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        for folder in {path.parent for path in files} - {self.run_dir}:
            with contextlib.suppress(OSError):  # gone if emptied; kept if it holds the user's
                folder.rmdir()

    def restore(self) -> list[Path]:
        """Put every file back (over what the new run wrote there), remove the folder: the files."""
        restored = []
        if self.folder.is_dir() and not self.folder.is_symlink():
            for path in sorted(p for p in self.folder.rglob("*") if p.is_file()):
                original = self.run_dir / path.relative_to(self.folder)
                original.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, original)
                restored.append(original)
            self.discard()
        return restored

    def discard(self) -> None:
        """Delete the set-aside files and the folder (the new run has made its first checkpoint)."""
        if self.folder.is_symlink():
            self.folder.unlink()
        elif self.folder.is_dir():
            shutil.rmtree(self.folder)  # a link inside is removed itself, never followed


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on path (created if need be, never through a link) for the
    block, waiting for any other holder: for work that two processes must not do at once."""
    refuse_link(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
