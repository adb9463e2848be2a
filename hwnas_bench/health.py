"""A board's health note in the lock directory: failed checks, back-off, last good check.

Shared by every process on the host, and possibly planted by another user: each field is
checked on its own when read, and the note is replaced atomically when written.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from .locks import (
    SHARED_MODE,
    UnsafeLockFileError,
    note_text,
    open_in_lock_dir,
    parse_note,
    read_in_lock_dir,
)

#: Back-off of a board marked unhealthy: the first, and the longest.
BACKOFF_S, MAX_BACKOFF_S = 30.0, 600.0

#: A count of failures beyond this in a health note is not ours (the back-off tops out at 5).
MAX_FAILURES = 1_000_000


@dataclass
class Health:
    """A board's health file, ``<lock dir>/<board>.health`` (JSON; unknown keys ignored)."""

    consecutive_failures: int = 0
    last_error: str | None = None
    last_ok: float | None = None  #: time.time() of the last good check
    retry_after: float | None = None  #: marked unhealthy: not checked before this time.time()

    @classmethod
    def load(cls, path: Path, now: float | None = None) -> Health:
        """The note, each field checked on its own: a field of the wrong type or out of
        range (a planted note in a shared directory) reads as its default."""
        data = parse_note(read_in_lock_dir(path)) or {}
        now = time.time() if now is None else now
        failures = data.get("consecutive_failures")
        last_ok, retry_after = _time(data.get("last_ok")), _time(data.get("retry_after"))
        if retry_after is not None and retry_after > now + MAX_BACKOFF_S:
            retry_after = None  # later than any back-off we write: not ours, check it now
        return cls(
            consecutive_failures=failures
            if type(failures) is int and 0 <= failures <= MAX_FAILURES
            else 0,
            last_error=note_text(data.get("last_error")),
            last_ok=last_ok,
            retry_after=retry_after,
        )

    def backing_off(self, now: float) -> bool:
        return self.retry_after is not None and now < self.retry_after

    def describe_back_off(self, now: float) -> str:
        n = self.consecutive_failures
        left = (self.retry_after or now) - now
        return (
            f"unhealthy after {n} failed check{'' if n == 1 else 's'}, last {self.last_error}; "
            f"next check in {left:.0f} s"
        )

    def failed(self, error: str, unhealthy_after: int, now: float) -> None:
        self.consecutive_failures += 1
        self.last_error = error
        beyond = self.consecutive_failures - unhealthy_after
        if beyond >= 0:
            self.retry_after = now + min(MAX_BACKOFF_S, BACKOFF_S * 2.0 ** min(beyond, 16))

    def passed(self, now: float) -> None:
        self.consecutive_failures, self.last_error = 0, None
        self.last_ok, self.retry_after = now, None

    def save(self, path: Path) -> None:
        """Best effort (a health note that cannot be written must not stop a lease), and
        atomic: written to a new file of our own beside it, then renamed over it."""
        data = json.dumps(asdict(self)).encode()
        try:
            _replace_file(path, data)
        except (OSError, UnsafeLockFileError) as exc:
            warnings.warn(f"hwnas: health note {path} not written: {exc}", stacklevel=2)


def _time(value: object) -> float | None:
    """A time.time() from a note: a finite number >= 0, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _replace_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, SHARED_MODE)  # O_EXCL: a new file, never a planted one
    try:
        os.fchmod(fd, SHARED_MODE)  # not the umask's 0644: the group updates it too
        os.write(fd, data)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)  # replaces a planted link itself, never what it points to
    except PermissionError:
        # A sticky shared directory where another user's note is in place: rewrite it
        # in place through a checked descriptor instead (it is group-writable).
        os.unlink(tmp)
        fd = open_in_lock_dir(path, os.O_WRONLY, create=False)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        finally:
            os.close(fd)
    except BaseException:
        os.unlink(tmp)
        raise
