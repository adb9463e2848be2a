"""TCP mode's limits: what one connection may cost the board, and the failed-hello throttle."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class TcpLimits:
    """What a TCP connection may cost the board before the agent closes it."""

    auth_timeout_s: float = 10.0  #: from accept to a successful hello
    idle_timeout_s: float = 300.0  #: without a whole frame from the host
    max_auth_failures: int = 3  #: failed hellos on one connection, then it is closed
    auth_fail_delay_s: float = 0.5  #: wait before answering a failed hello; doubles
    auth_fail_delay_max_s: float = 8.0
    auth_fail_forget_s: float = 60.0  #: an address's failures are forgotten after this
    max_connections: int = 8  #: served at once; more are answered busy and closed
    #: connections from one address not yet authenticated: so one address cannot hold
    #: every slot until the auth deadline, again and again
    max_unauthenticated_per_address: int = 4


class AuthThrottle:
    """Failed hellos by source address: each waits twice as long as the one before it.

    The waits of one address queue behind each other, so opening more connections does
    not buy more guesses; a connection waits in its own thread and holds up nobody else.
    """

    _MAX_ADDRESSES = 1024

    def __init__(self, limits: TcpLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, Tuple[int, float]] = OrderedDict()  # failures, free at

    def penalty(self, address: str) -> float:
        """Record a failed hello from ``address``; seconds to wait before answering it."""
        lim = self.limits
        with self._lock:
            now = time.monotonic()
            failures, free_at = self._seen.pop(address, (0, now))
            if now - free_at > lim.auth_fail_forget_s:
                failures = 0
            delay = min(lim.auth_fail_delay_s * 2.0 ** min(failures, 60), lim.auth_fail_delay_max_s)
            free_at = max(free_at, now) + delay
            self._seen[address] = (failures + 1, free_at)
            while len(self._seen) > self._MAX_ADDRESSES:
                self._seen.popitem(last=False)
            return free_at - now
