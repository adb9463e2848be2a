"""How fast to retry and how much to send at once, on a line that loses bytes.

``RetryTimer`` is TCP's retransmission timer (Jacobson/Karels smoothed round-trip time with
Karn's rule: only answers to a frame sent once are sampled, and each timeout doubles the
wait). ``ChunkSizer`` halves the upload chunk after a failed send and doubles it after a
run of clean ones, as ZMODEM does, so a noisy line still makes progress and a clean one
runs at full size. ``Deadline`` is a point on the monotonic clock that waits are cut to
(as pyserial's ``serialutil.Timeout``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


class Deadline:
    """``seconds`` from now (or from ``since``) on a monotonic clock."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self.at = clock() + seconds  #: the moment it expires, on ``clock``

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - self._clock())

    def expired(self) -> bool:
        return self._clock() >= self.at

    def restart(self, seconds: float | None = None, *, since: float | None = None) -> None:
        """Expire ``seconds`` (default: the span given before) after ``since`` (default now)."""
        if seconds is not None:
            self.seconds = seconds
        self.at = (self._clock() if since is None else since) + self.seconds

    def extend_to(self, moment: float) -> None:
        """Expire no earlier than ``moment``."""
        self.at = max(self.at, moment)


@dataclass
class RetryTimer:
    """Jacobson/Karels, plus a per-byte estimate: on a slow line a frame twice as long takes
    twice as long to cross, and the chunk sizer does double the frames. Without the per-byte
    term every doubling would look like a loss."""

    initial: float  #: the wait before any round trip has been measured
    minimum: float = 0.05
    maximum: float = 5.0  #: cap of the size-independent part
    srtt: float | None = None
    rttvar: float = 0.0
    per_byte: float = 0.0  #: smoothed seconds per byte of a round trip

    def timeout(self, attempt: int = 1, nbytes: int = 0) -> float:
        """How long to wait for the answer to the ``attempt``-th send of ``nbytes``."""
        if self.srtt is None:
            base = self.initial
        else:
            fixed = min(self.maximum, max(self.minimum, self.srtt + 4 * self.rttvar))
            base = max(fixed, 2.0 * self.per_byte * nbytes)
        return float(min(60.0, base * 2.0 ** (attempt - 1)))

    def sample(self, rtt: float, nbytes: int = 0) -> None:
        if nbytes > 0:
            rate = rtt / nbytes
            self.per_byte = rate if self.srtt is None else 0.875 * self.per_byte + 0.125 * rate
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
            return
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
        self.srtt = 0.875 * self.srtt + 0.125 * rtt


@dataclass
class ChunkSizer:
    size: int
    minimum: int
    maximum: int
    grow_after: int = 4
    _clean: int = field(default=0, repr=False)

    def record(self, attempts: int) -> None:
        if attempts > 1:
            self.size = max(self.minimum, self.size // 2)
            self._clean = 0
            return
        self._clean += 1
        if self._clean >= self.grow_after:
            self.size = min(self.maximum, self.size * 2)
            self._clean = 0
