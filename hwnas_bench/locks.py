"""Exclusive use of a board across processes: an OS lock that a crashed process releases.

Each board has a lock file ``<lock dir>/<board>.lock`` held with ``flock``: the kernel
drops the lock when its holder exits, however it exits, so a crashed pytest worker never
leaves a board locked. The holder writes who it is into the file, so a waiting process can
say who has the board. The lock directory must be on a local filesystem (flock over NFS is
not reliable); several users share boards by pointing ``HWNAS_LOCK_DIR`` at one
group-writable directory.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import getpass
import json
import os
import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

LOCK_DIR_ENV = "HWNAS_LOCK_DIR"


def default_lock_dir() -> Path:
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hwnas-bench" / "locks"


def safe_name(name: str) -> str:
    """A board name usable as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


@dataclass(frozen=True)
class Holder:
    """Who holds a board: enough to find them."""

    pid: int
    host: str
    user: str
    purpose: str
    since: str  #: ISO time, UTC

    def describe(self) -> str:
        what = f" ({self.purpose})" if self.purpose else ""
        return f"pid {self.pid} of {self.user}@{self.host}{what} since {self.since}"

    @classmethod
    def me(cls, purpose: str) -> Holder:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        return cls(os.getpid(), socket.gethostname(), getpass.getuser(), purpose, now)


class BoardLock:
    def __init__(self, lock_dir: Path, board: str) -> None:
        self.board = board
        self.path = lock_dir / f"{safe_name(board)}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, purpose: str = "") -> bool:
        """Take the lock if it is free; never blocks."""
        if self._fd is not None:
            return True
        fd, writable = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        if writable:  # the holder note is for people; the lock itself is the flock
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(asdict(Holder.me(purpose))).encode(), 0)
        self._fd = fd
        return True

    def _open(self) -> tuple[int, bool]:
        """Open the lock file; in a shared directory another user may own it (read-only
        then: flock needs no write access)."""
        from .errors import HwnasError

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o664)
        except PermissionError:
            try:
                return os.open(self.path, os.O_RDONLY), False
            except OSError as exc:
                raise HwnasError(f"cannot open the lock {self.path}: {exc.strerror}") from exc
        except OSError as exc:
            raise HwnasError(f"cannot open the lock {self.path}: {exc.strerror}") from exc
        with contextlib.suppress(OSError):  # umask would leave it 0644: others could not lock
            os.fchmod(fd, 0o664)
        return fd, True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):  # a read-only descriptor cannot truncate
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def holder(self) -> Holder | None:
        """Who holds the board now (None if nobody: a crashed holder's note is ignored)."""
        if self._fd is not None:
            return None
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return Holder(**json.loads(text))
            except (ValueError, TypeError):
                return Holder(0, "?", "?", "unknown holder", "?")
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)
