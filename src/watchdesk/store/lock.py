"""One daemon per database: an exclusive lock on `<database>.lock`, held for the
daemon's life (and for `poll --once`'s run).

flock(2) locks belong to the open file: the kernel releases them when the process ends,
however it ends, so a SIGKILLed daemon never blocks the next start, and a stale file
left behind means nothing. The file holds the holder's PID, for the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import StoreError


class DatabaseInUse(StoreError):
    """Another process holds the database's lock."""

    def __init__(self, message: str, pid: int | None):
        super().__init__(message)
        self.pid = pid


class DatabaseLock:
    def __init__(self, fd: int | None, path: Path | None):
        self._fd = fd
        self.path = path

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the lock
            self._fd = None

    def __enter__(self) -> DatabaseLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_path(database: Path | str) -> Path:
    return Path(f"{database}.lock")


def hold(database: Path | str, what: str = "watchdesk run") -> DatabaseLock:
    """Take the database's lock or raise DatabaseInUse naming the holder's PID."""
    if str(database) == ":memory:":
        return DatabaseLock(None, None)
    path = lock_path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise StoreError(
            f"cannot create the lock file {path} beside database {database}: {e.strerror or e}; "
            "the daemon needs write access to the database's directory"
        ) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        holder = f"pid {pid}" if pid else "another process"
        raise DatabaseInUse(
            f"database {database} is in use by another watchdesk ({holder}); {what} would poll every "
            "feed a second time: stop the other one first (e.g. `systemctl stop watchdesk`), or give "
            "this one another [watchdesk] database",
            pid,
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DatabaseLock(fd, path)


def holder(database: Path | str) -> int | None:
    """The PID holding the database's lock, or None when nobody does (never blocks); -1
    when it is held but the holder has not written its PID yet (it is starting)."""
    path = lock_path(database)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
