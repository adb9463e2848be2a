"""Serial lines without hardware: a socat pty pair, and a relay that damages bytes.

``start_pty_pair`` gives two device paths joined like the two ends of a null-modem cable.
:class:`FaultyRelay` joins two such pairs through this process and, with a seeded random
generator, flips a bit in some bytes and drops others, as a noisy UART does::

    agent ── pair1.a │ pair1.b ── relay ── pair2.a │ pair2.b ── host
"""

from __future__ import annotations

import os
import select
import subprocess
import termios
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .parts import require_binary, start_until_ready, stop_process


@dataclass
class PtyPair:
    a: Path
    b: Path
    proc: subprocess.Popen[bytes]
    _holders: list[int] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        for fd in self._holders:
            os.close(fd)
        self._holders.clear()
        stop_process(self.proc)


def start_serial_agent(
    port: Path, cache: Path, *extra: str, log_level: str = "WARNING"
) -> subprocess.Popen[bytes]:
    """An agent serving on one end of a pty pair, as on a board's UART."""
    import sys

    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device_agent",
            "--serial",
            str(port),
            "--cache-dir",
            str(cache),
            "--log-level",
            log_level,
            *extra,
        ],
        stdin=subprocess.DEVNULL,
    )


def _open_raw(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd, termios.TCSANOW)
    return fd


def start_pty_pair(workdir: Path, name: str = "tty", timeout: float = 10.0) -> PtyPair:
    socat = require_binary("socat")
    workdir.mkdir(parents=True, exist_ok=True)
    a, b = workdir / f"{name}-a", workdir / f"{name}-b"
    proc = start_until_ready(
        [socat, "-d", "-d", f"pty,rawer,echo=0,link={a}", f"pty,rawer,echo=0,link={b}"],
        b"starting data transfer loop",
        timeout,
    )
    # Hold both ends open: when the last user of a pty end closes it, socat sees EOF and
    # exits, and a host that reconnects would find no line. A real UART does not vanish.
    pair = PtyPair(a, b, proc)
    pair._holders = [os.open(a, os.O_RDWR | os.O_NOCTTY), os.open(b, os.O_RDWR | os.O_NOCTTY)]
    return pair


@dataclass
class RelayStats:
    bytes_in: int = 0
    corrupted: int = 0
    dropped: int = 0


class FaultyRelay:
    """Copies bytes between two pty ends, corrupting and dropping some on the way."""

    def __init__(
        self,
        left: Path,
        right: Path,
        *,
        corrupt_rate: float = 1e-4,
        drop_rate: float = 1e-4,
        seed: int = 0,
        bytes_per_s: float | None = None,
    ) -> None:
        """``bytes_per_s`` throttles the line, as a UART's baud rate does."""
        self.corrupt_rate = corrupt_rate
        self.drop_rate = drop_rate
        self.bytes_per_s = bytes_per_s
        self.stats = RelayStats()
        self._rng = np.random.default_rng(seed)
        self._left, self._right = _open_raw(left), _open_raw(right)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="faulty-relay", daemon=True)
        self._thread.start()

    def _damage(self, data: bytes) -> bytes:
        arr = np.frombuffer(data, dtype=np.uint8).copy()
        flips = self._rng.random(arr.size) < self.corrupt_rate
        if flips.any():
            bits = self._rng.integers(0, 8, size=int(flips.sum()))
            arr[flips] ^= (1 << bits).astype(np.uint8)
        keep = self._rng.random(arr.size) >= self.drop_rate
        self.stats.bytes_in += arr.size
        self.stats.corrupted += int(flips.sum())
        self.stats.dropped += int(arr.size - keep.sum())
        return bytes(arr[keep].tobytes())

    def _run(self) -> None:
        peer = {self._left: self._right, self._right: self._left}
        while True:
            ready, _, _ = select.select([self._left, self._right, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except (BlockingIOError, OSError):
                    continue
                if data:
                    if self.bytes_per_s:  # a slow line: the relay is the wire's clock
                        time.sleep(len(data) / self.bytes_per_s)
                    out = self._damage(data)
                    while out:
                        try:
                            written: int = os.write(peer[fd], out)
                            out = out[written:]
                        except BlockingIOError:
                            select.select([], [peer[fd]], [], 1.0)

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        for fd in (self._left, self._right, self._stop_r, self._stop_w):
            os.close(fd)
