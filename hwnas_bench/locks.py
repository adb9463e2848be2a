"""Exclusive use of a board across processes: an OS lock that a crashed process releases.

This module is the default lock backend (:class:`FileLocks`) and the interface every
backend has (:class:`LockBackend`, :class:`LeaseLock`); ``hwnas_bench.pg_locks`` is the
other one, for boards shared by several hosts.

Each board has a lock file ``<lock dir>/<board>.lock`` held with ``flock``: the kernel
drops the lock when its holder exits, however it exits, so a crashed pytest worker never
leaves a board locked. The holder writes who it is into the file, so a waiting process can
say who has the board. The lock directory must be on a local filesystem (flock over NFS is
not reliable); several users share boards by pointing ``HWNAS_LOCK_DIR`` at one
group-writable directory.

In such a directory another user can plant files, so every file in it is opened with
:func:`open_in_lock_dir`: never through a symbolic link, never a hard link, never anything
but a regular file, never truncated or re-moded before those checks (see its docstring).
What is read back from it (a holder note, a health note) is read as hostile too: at most
:data:`MAX_NOTE_BYTES`, parsed without trusting its nesting, each field checked by type.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import getpass
import json
import os
import re
import socket
import stat
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from .errors import HwnasError

LOCK_DIR_ENV = "HWNAS_LOCK_DIR"

#: Files in the lock directory are shared with the group (boards are shared by a team).
SHARED_MODE = 0o664

#: The most read of a note in the lock directory; ours are a few hundred bytes.
MAX_NOTE_BYTES = 64 * 1024

#: The longest text field of a note that is shown to people (it goes into one-line errors).
MAX_NOTE_TEXT = 200


class UnsafeLockFileError(HwnasError):
    """A file in the lock directory is not what hwnas-bench writes there (a symbolic or hard
    link, a FIFO, a directory): it is refused untouched. ``path`` names it."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(
            f"refusing {path}: {why}; remove it (someone may have planted it to make "
            "hwnas-bench overwrite another file)"
        )
        self.path = path


def open_in_lock_dir(path: Path, flags: int, *, create: bool = True) -> int:
    """Open a file of the (possibly shared) lock directory safely; return the descriptor.

    - ``O_NOFOLLOW``: a symbolic link is refused, never followed to its target;
    - a file with more than one hard link is refused (a link to a file of ours elsewhere);
    - anything but a regular file is refused (``O_NONBLOCK`` keeps a FIFO from blocking);
    - a file we own is set to :data:`SHARED_MODE` with ``fchmod`` on the descriptor, only
      after these checks; a file of another user (a colleague who created it first in a
      group-shared directory) is used as it is: it cannot lead to a file of ours.

    Nothing is truncated here; callers truncate through the checked descriptor.
    Raises :class:`UnsafeLockFileError` for a refused file and lets other ``OSError``s
    (permissions, a missing directory) through.
    """
    extra = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags | extra, SHARED_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeLockFileError(path, "it is a symbolic link") from exc
        if exc.errno == errno.ENXIO:  # O_NONBLOCK write-open of a FIFO without a reader
            raise UnsafeLockFileError(path, "it is not a regular file") from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeLockFileError(path, "it is not a regular file")
        if info.st_nlink != 1:
            raise UnsafeLockFileError(path, f"it is a hard link ({info.st_nlink} names)")
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != SHARED_MODE:
            with contextlib.suppress(OSError):  # umask would leave it 0644: others could not lock
                os.fchmod(fd, SHARED_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_in_lock_dir(path: Path) -> str | None:
    """The text of a lock-directory file, or None if it is missing, refused, or larger
    than :data:`MAX_NOTE_BYTES` (not a note of ours: never read whole)."""
    try:
        fd = open_in_lock_dir(path, os.O_RDONLY, create=False)
    except (OSError, UnsafeLockFileError):
        return None
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(MAX_NOTE_BYTES + 1)
        except OSError:
            return None
    return None if len(data) > MAX_NOTE_BYTES else data.decode("utf-8", "replace")


def parse_note(text: str | None) -> dict[str, object] | None:
    """A note's JSON object, or None for anything else: not JSON, not an object, or nested
    beyond the parser's recursion limit (a planted ``[[[[...``)."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError, MemoryError):
        return None
    return data if isinstance(data, dict) else None


def note_text(value: object) -> str | None:
    """A text field of a note fit for a one-line message: its first line, printable, short."""
    if not isinstance(value, str):
        return None
    line = (value.splitlines() or [""])[0]
    line = "".join(c if c.isprintable() else "?" for c in line)
    return line[:MAX_NOTE_TEXT]


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

    @property
    def known(self) -> bool:
        """False for a holder whose note could not be read (``pid`` 0)."""
        return self.pid > 0

    def describe(self) -> str:
        if not self.known:
            return f"an unknown process ({self.purpose})"
        what = f" ({self.purpose})" if self.purpose else ""
        return f"pid {self.pid} of {self.user}@{self.host}{what} since {self.since}"

    @classmethod
    def parse(cls, text: str, lock_file: str) -> Holder:
        """The holder a lock file's note names; an unknown holder if it cannot be read."""
        data = parse_note(text) or {}
        pid = data.get("pid")
        texts = [note_text(data.get(key)) for key in ("host", "user", "purpose", "since")]
        if type(pid) is not int or pid <= 0 or any(t is None for t in texts):
            return cls(0, "?", "?", f"its note in {lock_file} cannot be read", "?")
        host, user, purpose, since = (t or "" for t in texts)
        return cls(pid, host, user, purpose, since)

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
        try:
            return open_in_lock_dir(self.path, os.O_RDWR), True
        except PermissionError:
            try:
                return open_in_lock_dir(self.path, os.O_RDONLY, create=False), False
            except OSError as exc:
                raise HwnasError(f"cannot open the lock {self.path}: {exc.strerror}") from exc
        except OSError as exc:
            raise HwnasError(f"cannot open the lock {self.path}: {exc.strerror}") from exc

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
            fd = open_in_lock_dir(self.path, os.O_RDONLY, create=False)
        except (OSError, UnsafeLockFileError):
            return None  # missing, or not a lock file of ours: nobody holds it through us
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 4096, 0).decode("utf-8", "replace")  # ours: ~200 bytes
                return Holder.parse(text, self.path.name)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


class LeaseLock(Protocol):
    """One board's lock, as the farm uses it; :class:`BoardLock` and the PostgreSQL lock."""

    board: str

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        ...

    def try_acquire(self, purpose: str = "") -> bool:
        """Take the lock if it is free and write the holder note; never blocks."""
        ...

    def release(self) -> None:
        """Free the lock (and remove the note); a no-op when not held."""
        ...

    def holder(self) -> Holder | None:
        """Who else holds the board now; None if nobody (or this object holds it)."""
        ...


class LockBackend(Protocol):
    """Where the farm's board locks live: a local directory, or a PostgreSQL server."""

    #: Shown to people (``hwnas farm status``): a path, or a URL without its password.
    where: str

    def lock(self, board: str) -> LeaseLock:
        """A lock object for ``board``, not yet held."""
        ...

    def holders(self, boards: Iterable[str]) -> dict[str, Holder | None]:
        """Who holds each of ``boards`` now (None: free)."""
        ...

    def held_elsewhere(self, known: Iterable[str]) -> dict[str, Holder]:
        """Boards held now that ``known`` does not list (another host's configuration);
        empty where the backend cannot tell."""
        ...

    def close(self) -> None:
        """Let go of what the backend keeps open between calls (not of held locks)."""
        ...


class FileLocks:
    """The default backend: ``flock`` on ``<lock dir>/<board>.lock`` (one host)."""

    def __init__(self, lock_dir: Path) -> None:
        self.lock_dir = lock_dir
        self.where = str(lock_dir)

    def lock(self, board: str) -> BoardLock:
        return BoardLock(self.lock_dir, board)

    def holders(self, boards: Iterable[str]) -> dict[str, Holder | None]:
        return {board: BoardLock(self.lock_dir, board).holder() for board in boards}

    def held_elsewhere(self, known: Iterable[str]) -> dict[str, Holder]:
        return {}  # lock files are named by safe_name(board): the name cannot be read back

    def close(self) -> None:
        pass
