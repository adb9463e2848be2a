"""Safe file operations for the run directory and the caches the search writes.

The directory must be this user's, and nothing in it a link or a special file: another user
who made ``--out`` (or planted a link in it) must not make a search, run as root, write
through that link over root's own files. Files are written through :func:`write_file` (a new
file of our own, renamed over the old: a planted link is replaced, never followed), appended
through :func:`open_append` and read through :func:`read_file` (no link followed, a regular
file only, at most a size cap).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from pathlib import Path
from typing import IO

from .errors import SettingsError

#: the largest model a run reads or copies (best.onnx, a card's model, a kept retrained
#: model): the agent's default model cache bound
MAX_MODEL_BYTES = 2 << 30
_OPEN = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class UnsafeRunDirError(SettingsError):
    """The run directory, or a file in it, is not what a search of this user writes there:
    another user's directory, a symbolic link, a FIFO or device, a file with several names.
    It is refused untouched (exit 2). ``path`` names it."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(
            f"refusing {path}: {why} (someone may have planted it to make the search "
            "overwrite another file); remove it or choose another output directory"
        )
        self.path = path


def _checked(fd: int, path: Path, *, single: bool = False) -> int:
    """``fd`` if it is a regular file (``single``: with one name); else closed and refused."""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeRunDirError(path, "it is not a regular file")
        if single and info.st_nlink != 1:
            raise UnsafeRunDirError(path, f"it is a hard link ({info.st_nlink} names)")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_checked(path: Path, flags: int, *, single: bool = False) -> int:
    """``os.open`` that never follows a link at ``path`` and returns only a regular file
    (``O_NONBLOCK``: a FIFO cannot hang the search). Raises UnsafeRunDirError for a refused
    file; other OSErrors (a missing file, permissions) go through."""
    try:
        fd = os.open(path, flags | _OPEN, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeRunDirError(path, "it is a symbolic link") from None
        if exc.errno == errno.ENXIO:  # O_NONBLOCK write-open of a FIFO without a reader
            raise UnsafeRunDirError(path, "it is not a regular file") from None
        raise
    return _checked(fd, path, single=single)


def read_file(path: Path, limit: int) -> bytes:
    """The bytes of a regular file at ``path`` (never through a link), if at most ``limit``;
    UnsafeRunDirError for anything else (a link to /dev/zero is never read whole)."""
    fd = open_checked(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UnsafeRunDirError(path, f"it is larger than {limit} bytes")
    return data


def read_present(path: Path, limit: int | None = None) -> bytes | None:
    """The bytes of the run's file ``path`` (a regular file of one name, never through a
    link; at most ``limit`` bytes read), or None when there is none yet; a file that cannot be
    read is a SettingsError."""
    try:
        fd = open_checked(path, os.O_RDONLY, single=True)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        return fh.read() if limit is None else fh.read(limit)


def write_file(path: Path, data: bytes | str) -> bool:
    """Write ``data`` to ``path`` safely: into a new file of our own beside it (``O_EXCL``:
    never a planted one), then renamed over ``path`` (a link there is replaced, never
    followed). A file that already holds ``data`` is left as it is, with its date. True when
    written."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        if os.lstat(path).st_size == len(raw) and read_file(path, len(raw)) == raw:
            return False
    except (OSError, UnsafeRunDirError):
        pass  # missing, or not ours to read: replaced below
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def open_append(path: Path) -> IO[bytes]:
    """``path`` opened to append (created if missing): a regular file with one name, never
    through a link."""
    fd = open_checked(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, single=True)
    return os.fdopen(fd, "ab")


def owned_dir(path: Path) -> Path:
    """``path`` made if missing (parents too), and refused unless it is a directory of this
    user, not a link; an OSError (no such place, read-only) is a SettingsError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise SettingsError(
            f"cannot use {path} as a run directory: {exc.strerror or exc}"
        ) from None
    if stat.S_ISLNK(info.st_mode):
        target = os.stat(path)  # a link of our own to a directory of our own is fine
        if info.st_uid != os.geteuid() or target.st_uid != os.geteuid():
            raise UnsafeRunDirError(path, "it is a link to or of another user")
        info = target
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeRunDirError(path, "it is not a directory")
    if info.st_uid != os.geteuid():
        raise UnsafeRunDirError(path, f"it belongs to another user (uid {info.st_uid})")
    return path


def scan(out: Path) -> None:
    """Refuse a run directory with a link, a special file or another user's file anywhere in
    it (the search writes all over it: reports, models/, targets/)."""
    uid = os.geteuid()
    todo = [out]
    while todo:
        folder = todo.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise SettingsError(f"cannot read {folder}: {exc.strerror or exc}") from None
        for entry in entries:
            path = Path(entry.path)
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                raise UnsafeRunDirError(path, "it is a symbolic link")
            if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
                raise UnsafeRunDirError(path, "it is not a regular file")
            if info.st_uid != uid:
                raise UnsafeRunDirError(path, f"it belongs to another user (uid {info.st_uid})")
            if stat.S_ISDIR(info.st_mode):
                todo.append(path)
