"""What the host needs of a way to reach an agent: a byte stream with timeouts."""

from __future__ import annotations

import abc
import collections
import threading
from collections.abc import Callable


class Transport(abc.ABC):
    """A byte stream to one agent. ``open`` starts or reaches it, ``close`` ends it.

    ``read`` returns ``b""`` when nothing arrived within the timeout and raises
    :class:`~hwnas_bench.errors.ConnectionLostError` when the stream has ended.
    """

    #: False where bytes can be lost or damaged (a serial line): the channel retries then.
    reliable: bool = True

    def __init__(self, target: str) -> None:
        self.target = target

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """How the board is reached, for messages: ``ssh pi@10.0.0.7:22``."""

    @property
    @abc.abstractmethod
    def is_open(self) -> bool: ...

    @abc.abstractmethod
    def open(self, timeout: float) -> None: ...

    @abc.abstractmethod
    def read(self, max_bytes: int, timeout: float) -> bytes: ...

    @abc.abstractmethod
    def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def transfer_time(self, nbytes: int) -> float:
        """Seconds that ``nbytes`` take on the wire (0 for fast links)."""
        return 0.0

    def diagnostics(self) -> str:
        """The agent's last stderr lines, where the transport can see them."""
        return ""


class StderrTail:
    """Keeps the last lines an agent wrote to stderr, drained by a daemon thread."""

    def __init__(self, lines: int = 40) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=lines)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def drain(self, read_chunk: Callable[[], bytes]) -> threading.Thread:
        def run() -> None:
            pending = b""
            while True:
                try:
                    chunk = read_chunk()
                except (OSError, ValueError):
                    break
                if not chunk:
                    break
                pending += chunk
                *complete, pending = pending.split(b"\n")
                with self._lock:
                    self._lines.extend(c.decode("utf-8", "replace") for c in complete)
            if pending:
                with self._lock:
                    self._lines.append(pending.decode("utf-8", "replace"))

        thread = threading.Thread(target=run, name="agent-stderr", daemon=True)
        thread.start()
        self._thread = thread
        return thread

    def wait(self, timeout: float) -> None:
        """Wait (up to ``timeout`` s) until the stream has ended and every line is kept: an
        agent that died says why in its last lines, which may still be on their way."""
        if self._thread is not None:
            self._thread.join(timeout)

    def last_line(self) -> str:
        with self._lock:
            return next((line.strip() for line in reversed(self._lines) if line.strip()), "")

    def text(self, last: int = 8) -> str:
        with self._lock:
            return "\n".join(list(self._lines)[-last:])
