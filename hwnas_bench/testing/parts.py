"""Finding the real programs a test needs, and waiting for them to come up."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time


class MissingPart(RuntimeError):  # noqa: N818 - reads as "missing part", like pytest's Skipped
    """A program a test needs (sshd, socat) is not installed."""


def require_binary(name: str, *candidates: str) -> str:
    """Path of a program, or MissingPart naming the Debian package that provides it."""
    for path in (*candidates, shutil.which(name)):
        if path and os.access(path, os.X_OK):
            return path
    raise MissingPart(f"'{name}' not found (Debian: apt-get install {_PACKAGES.get(name, name)})")


_PACKAGES = {"sshd": "openssh-server", "ssh-keygen": "openssh-client", "socat": "socat"}


def wait_for_line(proc: subprocess.Popen[bytes], marker: bytes, timeout: float) -> bytes:
    """Read the process's stderr until a line contains ``marker``; return what was read.

    Waits on the pipe itself (select), never by sleeping.
    """
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {marker!r} within {timeout} s; output so far: {seen[-800:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"process exited ({proc.wait()}): {seen[-800:]!r}")
            seen += chunk
    return seen


def start_until_ready(argv: list[str], marker: bytes, timeout: float) -> subprocess.Popen[bytes]:
    """Start a server and return once its stderr says ``marker`` (it is listening)."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_line(proc, marker, timeout)
    except Exception:
        proc.kill()
        proc.wait()
        raise
    drain(proc)
    return proc


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, and kill what does not stop within 5 s."""
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def drain(proc: subprocess.Popen[bytes]) -> None:
    """Keep reading a process's stderr so it never blocks on a full pipe."""
    import threading

    assert proc.stderr is not None
    stream = proc.stderr

    def run() -> None:
        while stream.read(4096):
            pass

    threading.Thread(target=run, daemon=True).start()
