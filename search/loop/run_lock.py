"""One search at a time in a run directory: an OS lock that a killed process releases."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import SettingsError
from ..files import open_checked, owned_dir

LOCK_NAME = ".search.lock"


@contextlib.contextmanager
def run_dir_lock(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock for the length of a search; a second search there is refused.

    Two searches writing one study and one measurement log would fail each other's trials
    (and a resume could not tell whose they were), so the second one stops before it starts.
    """
    owned_dir(out)  # this user's directory (an OSError is one line too)
    path = out / LOCK_NAME
    try:  # never through a planted link, never a FIFO; one name only (truncated below)
        fd = open_checked(path, os.O_RDWR | os.O_CREAT, single=True)
    except OSError as exc:
        raise SettingsError(f"cannot lock {out}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 64, 0).decode(errors="replace")
            holder = "".join(c for c in text if c.isdigit())[:12] or "another process"
            raise SettingsError(
                f"another search is running in {out} (pid {holder}); wait for it, or choose "
                "another output directory"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
