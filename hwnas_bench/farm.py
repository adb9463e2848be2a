"""A board farm: lease a board by name or by tag, exclusively, health-checked.

::

    farm = Farm(load_config())
    with farm.lease("tag:pi5", timeout=600) as lease:
        m = lease.device.bench("model.onnx")

A lease holds the board's OS lock (:mod:`hwnas_bench.locks`) from acquisition to release,
so parallel pytest-xdist workers or parallel searches never measure on one board at once.
Before a lease is handed out the agent is greeted (``hello``); a board that fails that
check ``unhealthy_after`` times in a row is marked unhealthy and passed over by tag leases
while a healthy board with the tag exists. Every lease is appended to ``leases.jsonl`` in
the lock directory: who held which board, and when.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config
from .device import Device
from .errors import HwnasError, TargetError
from .locks import LOCK_DIR_ENV, BoardLock, Holder, default_lock_dir, safe_name
from .targets import TargetSpec


class BoardBusyError(HwnasError):
    """No board could be leased within the timeout; ``holders`` says who has them."""

    def __init__(self, what: str, waited: float, holders: dict[str, Holder | None]) -> None:
        held = "; ".join(
            f"{board} is held by {h.describe()}" if h else f"{board} was just released"
            for board, h in holders.items()
        )
        super().__init__(f"{what}: no board free after waiting {waited:.0f} s: {held}")
        self.what, self.waited, self.holders = what, waited, holders


class BoardUnhealthyError(TargetError):
    """The board failed its health check (it is unreachable, or its agent does not answer)."""


class NoHealthyBoardError(HwnasError):
    """No board that ``what`` names is healthy, so waiting cannot help; raised at once.

    ``reasons`` maps each board to why it is out (its last failed check).
    """

    def __init__(self, what: str, reasons: dict[str, str]) -> None:
        listed = ", ".join(f"{board} {why}" for board, why in reasons.items())
        super().__init__(f"no healthy board for {what}: {listed}")
        self.what, self.reasons = what, reasons


@dataclass
class Health:
    consecutive_failures: int = 0
    last_error: str | None = None
    last_ok: float | None = None

    @classmethod
    def load(cls, path: Path) -> Health:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        """Best effort: a health note that cannot be written must not stop a lease."""
        try:
            path.write_text(json.dumps(self.__dict__))
            with contextlib.suppress(OSError):  # shared lock dirs: let the group update it
                path.chmod(0o664)
        except OSError as exc:
            warnings.warn(f"hwnas: health note {path} not written: {exc}", stacklevel=2)


@dataclass
class Lease:
    """A board held exclusively until :meth:`release` (or the end of a ``with`` block)."""

    spec: TargetSpec
    device: Device
    facts: dict[str, Any]
    acquired_at: float  #: time.time()
    purpose: str
    _lock: BoardLock = field(repr=False)
    _log: Path = field(repr=False)
    released_at: float | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def release(self) -> None:
        if self.released_at is not None:
            return
        try:
            with contextlib.suppress(HwnasError):  # the next lease health-checks anyway
                self.device.reset()
        finally:
            self.released_at = time.time()
            self._lock.release()  # whatever happens to the log, the board is free again
        record = {
            "board": self.name,
            "pid": os.getpid(),
            "purpose": self.purpose,
            "start": self.acquired_at,
            "end": self.released_at,
        }
        try:
            with self._log.open("a") as fh:  # one short append per lease: atomic (O_APPEND)
                fh.write(json.dumps(record) + "\n")
        except OSError as exc:
            warnings.warn(f"hwnas: lease log {self._log} not written: {exc}", stacklevel=2)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(frozen=True)
class BoardStatus:
    spec: TargetSpec
    holder: Holder | None
    health: Health


class Farm:
    def __init__(
        self,
        config: Config,
        *,
        lock_dir: Path | None = None,
        purpose: str = "",
        unhealthy_after: int = 3,
        device_factory: Callable[[TargetSpec], Device] | None = None,
    ) -> None:
        self.config = config
        self.lock_dir = lock_dir or default_lock_dir()
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HwnasError(
                f"cannot use the lock directory {self.lock_dir}: {exc.strerror or exc} "
                f"(set {LOCK_DIR_ENV} to a writable local directory)"
            ) from exc
        self.purpose = purpose
        self.unhealthy_after = unhealthy_after
        self._device_factory = device_factory or (lambda spec: spec.device())
        self._devices: dict[str, Device] = {}  # kept open between leases of this process

    @property
    def lease_log(self) -> Path:
        return self.lock_dir / "leases.jsonl"

    def candidates(self, what: str) -> list[TargetSpec]:
        """The boards ``what`` may mean: a name, or ``tag:X``."""
        if what.startswith("tag:"):
            tag = what[4:]
            found = self.config.with_tag(tag)
            if not found:
                from .errors import ConfigError

                where = f" in {self.config.path}" if self.config.path else ""
                raise ConfigError(f"no board has the tag '{tag}'{where}")
            return found
        return [self.config.target(what)]

    def _health_path(self, board: str) -> Path:
        return self.lock_dir / f"{safe_name(board)}.health"

    def health(self, board: str) -> Health:
        return Health.load(self._health_path(board))

    def lease(self, what: str, *, timeout: float = 600.0, purpose: str | None = None) -> Lease:
        """Wait (up to ``timeout`` seconds) for a free, healthy board; hold it exclusively."""
        specs = self.candidates(what)
        start = time.monotonic()
        pause = 0.02
        last_error: TargetError | None = None
        while True:
            healthy = [
                s for s in specs if self.health(s.name).consecutive_failures < self.unhealthy_after
            ]
            order = healthy + [s for s in specs if s not in healthy]
            for spec in order:
                lock = BoardLock(self.lock_dir, spec.name)
                if not lock.try_acquire(purpose or self.purpose):
                    continue
                try:
                    return self._checked_lease(spec, lock, purpose or self.purpose)
                except TargetError as exc:
                    lock.release()
                    last_error = exc
                    if len(specs) == 1:
                        raise
                except BaseException:  # anything else: never keep a board locked by mistake
                    lock.release()
                    raise
            waited = time.monotonic() - start
            if waited >= timeout:
                if last_error is not None:
                    raise last_error
                holders = {s.name: BoardLock(self.lock_dir, s.name).holder() for s in specs}
                raise BoardBusyError(what, waited, holders)
            # Nothing free: poll again soon. flock has no timed wait, so this is how a
            # lock with a timeout is taken (the filelock package does the same).
            time.sleep(min(pause, max(0.0, timeout - waited)))
            pause = min(pause * 2, 0.5)

    def _checked_lease(self, spec: TargetSpec, lock: BoardLock, purpose: str) -> Lease:
        path = self._health_path(spec.name)
        health = Health.load(path)
        device = self._devices.get(spec.name) or self._device_factory(spec)
        try:
            facts = device.hello() if device.facts is not None else device.open()
        except TargetError as exc:
            device.close()
            self._devices.pop(spec.name, None)
            health.consecutive_failures += 1
            health.last_error = str(exc).splitlines()[0]
            health.save(path)
            if health.consecutive_failures >= self.unhealthy_after:
                raise BoardUnhealthyError(
                    spec.name,
                    "health check",
                    f"marked unhealthy after {health.consecutive_failures} failed checks; "
                    f"last: {health.last_error}",
                ) from exc
            raise
        health.consecutive_failures, health.last_error, health.last_ok = 0, None, time.time()
        health.save(path)
        self._devices[spec.name] = device
        return Lease(spec, device, facts, time.time(), purpose, lock, self.lease_log)

    def status(self) -> list[BoardStatus]:
        return [
            BoardStatus(spec, BoardLock(self.lock_dir, name).holder(), self.health(name))
            for name, spec in self.config.boards.items()
        ]

    def close(self) -> None:
        for device in self._devices.values():
            device.close()
        self._devices.clear()

    def __enter__(self) -> Farm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
