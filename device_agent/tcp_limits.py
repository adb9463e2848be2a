"""TCP mode's limits: what one connection may cost the board, and the failed-hello throttle."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Deque, Optional, Tuple


@dataclass(frozen=True)
class TcpLimits:
    """What a TCP connection may cost the board before the agent closes it."""

    auth_timeout_s: float = 10.0  #: from accept to a successful hello
    idle_timeout_s: float = 300.0  #: without a whole frame from the host
    max_auth_failures: int = 3  #: failed hellos on one connection, then it is closed
    auth_fail_delay_s: float = 0.5  #: wait before answering a failed hello; doubles
    auth_fail_delay_max_s: float = 8.0
    auth_fail_forget_s: float = 60.0  #: an address's failures are forgotten after this
    #: failed hellos per ``auth_fail_forget_s`` from all addresses that have never sent the
    #: right token; beyond it their tokens are not compared until the oldest failure is old
    auth_fail_budget: int = 30
    max_connections: int = 8  #: served at once; more are answered busy and closed
    #: connections from one address not yet authenticated: so one address cannot hold
    #: every slot until the auth deadline, again and again
    max_unauthenticated_per_address: int = 4
    #: frames before a successful hello: a hello is a few hundred bytes, and a large
    #: declared length must not make the agent buffer (and CRC) megabytes for a stranger
    preauth_max_header: int = 4096
    preauth_max_payload: int = 0


@dataclass(frozen=True)
class Turn:
    """When a hello's token may be compared: ``now`` unless one of the waits is set."""

    #: the address is still paying for its last failure: compare after this wait
    wait_s: Optional[float] = None
    #: the budget for untrusted addresses is spent: it has room again after this
    budget_wait_s: Optional[float] = None
    #: when the budget was charged for this hello (None: a trusted address, not charged)
    stamp: Optional[float] = None

    @property
    def now(self) -> bool:
        return self.wait_s is None and self.budget_wait_s is None


class AuthThrottle:
    """Failed hellos: per source address, and a budget for all addresses together.

    Per address, each failure is answered after a wait twice as long as the one before, and
    the waits queue behind each other; the address's next token is compared only once its
    last wait is over, so neither more connections nor closing them early buys guesses.
    Across addresses, those that have never sent the right token share a budget of
    ``auth_fail_budget`` failures per ``auth_fail_forget_s``: a fresh address per guess
    buys nothing either. Addresses that have authenticated are outside the budget, so an
    attack does not lock out the hosts that use the board.
    """

    _MAX_ADDRESSES = 1024

    def __init__(self, limits: TcpLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, Tuple[int, float]] = OrderedDict()  # failures, free at
        self._trusted: OrderedDict[str, None] = OrderedDict()  # authenticated once
        #: times of the budget's failed (or still being compared) hellos, oldest first
        self._spent: Deque[float] = deque()

    def turn(self, address: str) -> Turn:
        """What a hello's token from ``address`` must wait for before it is compared.

        When the turn says ``now``, the caller compares and then reports ``failed`` or
        ``succeeded`` with that turn, exactly once."""
        lim = self.limits
        with self._lock:
            now = time.monotonic()
            _, free_at = self._seen.get(address, (0, now))
            if free_at > now:
                return Turn(wait_s=free_at - now)
            if address in self._trusted:
                return Turn()
            while self._spent and now - self._spent[0] > lim.auth_fail_forget_s:
                self._spent.popleft()
            if len(self._spent) >= lim.auth_fail_budget:
                return Turn(budget_wait_s=self._spent[0] + lim.auth_fail_forget_s - now)
            self._spent.append(now)  # spent now; given back if the token is right
            return Turn(stamp=now)

    def succeeded(self, address: str, turn: Turn) -> None:
        """The token from ``address`` was right: give back what it spent, and trust it."""
        with self._lock:
            if turn.stamp is not None:
                with contextlib.suppress(ValueError):  # already expired from the budget
                    self._spent.remove(turn.stamp)
            self._trusted[address] = None
            self._trusted.move_to_end(address)
            while len(self._trusted) > self._MAX_ADDRESSES:
                self._trusted.popitem(last=False)

    def failed(self, address: str) -> float:
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
