"""One search at a time in a run directory: an OS lock that a killed process releases."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import SettingsError

LOCK_NAME = ".search.lock"


@contextlib.contextmanager
def run_dir_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock for the length of a search; a second search there is refused.

    Two searches writing one study and one measurement log would fail each other's trials
    (and a resume could not tell whose they were), so the second one stops before it starts.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise SettingsError(
                f"another search is running in {out} (pid {holder}); wait for it, or choose "
                "another output directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
