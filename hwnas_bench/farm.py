"""A board farm: lease a board by name or by tag, exclusively, health-checked.

::

    farm = Farm(load_config())
    with farm.lease("tag:pi5", timeout=600, on_wait=print) as lease:
        m = lease.device.bench("model.onnx")

A lease holds the board's lock from acquisition to release, so parallel pytest-xdist
workers or parallel searches never measure on one board at once: an OS file lock
(:mod:`hwnas_bench.locks`, one host) by default, or a PostgreSQL advisory lock
(:mod:`hwnas_bench.pg_locks`) that every host sharing the server honours, when
``HWNAS_LOCK_URL`` or ``[farm] lock_url`` names one.
Before a lease is handed out the agent is greeted (``hello``). A lease call checks each
board at most once: one that fails is out of that call, and when no board is left that
could be leased, the call raises :class:`NoHealthyBoardError` at once instead of waiting
for its timeout; it waits only while a healthy board is held by someone else. A board that
fails ``unhealthy_after`` checks in a row is marked unhealthy and not checked again until a
back-off has passed (30 s, doubling with each further failure, at most 10 min; kept in its
health file, so every process on the host honours it). Every lease is appended to
``leases.jsonl`` in the lock directory: who held which board, and when. Health files and
the lease log stay in the local lock directory with either backend.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config
from .device import Device
from .errors import ConnectError, HwnasError, TargetError, UnknownTargetError
from .facts import BoardFacts
from .health import Health
from .lock_url import lock_url_from
from .locks import (
    LOCK_DIR_ENV,
    FileLocks,
    Holder,
    LeaseLock,
    LockBackend,
    UnsafeLockFileError,
    default_lock_dir,
    open_in_lock_dir,
    safe_name,
)
from .pacing import Deadline
from .targets import TargetSpec

#: How often a waiting lease repeats its ``on_wait`` message.
WAIT_NOTE_EVERY_S = 60.0


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

    ``reasons`` maps each board to why it is out (its last failed check, or its back-off).
    """

    def __init__(self, what: str, reasons: dict[str, str]) -> None:
        listed = "; ".join(f"{board} {why}" for board, why in reasons.items())
        super().__init__(f"no healthy board for {what}: {listed}")
        self.what, self.reasons = what, reasons


def _reason(exc: TargetError) -> str:
    """Why a board is out, as "orin-1 <reason>" reads: "unreachable (...)"."""
    marked = isinstance(exc, BoardUnhealthyError) and isinstance(exc.__cause__, TargetError)
    cause = exc.__cause__ if marked else exc
    assert isinstance(cause, TargetError)
    detail = (cause.detail.splitlines() or [""])[0]
    why = (
        f"unreachable ({detail})"
        if isinstance(cause, ConnectError)
        else f"failed its check ({cause.step}: {detail})"
    )
    return f"{why}, now marked unhealthy" if marked else why


@dataclass
class Lease:
    """A board held exclusively until :meth:`release` (or the end of a ``with`` block)."""

    spec: TargetSpec
    device: Device
    facts: BoardFacts  #: the board's hello facts when it was leased
    acquired_at: float  #: time.time()
    purpose: str
    _lock: LeaseLock = field(repr=False)
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
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "purpose": self.purpose,
            "start": self.acquired_at,
            "end": self.released_at,
        }
        try:
            fd = open_in_lock_dir(self._log, os.O_WRONLY | os.O_APPEND)
            try:  # one short append per lease: atomic (O_APPEND)
                os.write(fd, (json.dumps(record) + "\n").encode())
            finally:
                os.close(fd)
        except (OSError, UnsafeLockFileError) as exc:
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
        lock_url: str | None = None,
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
        self.locks = open_lock_backend(self.lock_dir, lock_url, config.lock_url)
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
                where = f" in {self.config.path}" if self.config.path else ""
                raise UnknownTargetError(f"no board has the tag '{tag}'{where}")
            return found
        return [self.config.target(what)]

    def _health_path(self, board: str) -> Path:
        return self.lock_dir / f"{safe_name(board)}.health"

    def health(self, board: str) -> Health:
        return Health.load(self._health_path(board))

    def lease(
        self,
        what: str,
        *,
        timeout: float = 600.0,
        purpose: str | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> Lease:
        """Hold a free, healthy board that ``what`` (a name or ``tag:X``) names.

        Each board is checked at most once per call. Raises :class:`NoHealthyBoardError` at
        once when every board is out (failed its check now, or backing off); for a board
        asked for by name whose check fails now, that check's own error (``ConnectError``,
        ``DeployError``..., or :class:`BoardUnhealthyError` once it is marked). Waits up to
        ``timeout`` s only while a healthy board is held by someone else, then raises
        :class:`BoardBusyError`. ``on_wait`` gets a line saying what the call waits for,
        once when waiting starts and again every minute.
        """
        specs = self.candidates(what)
        purpose = purpose or self.purpose
        deadline = Deadline(timeout)
        out: dict[str, str] = {}  # boards out of this call, and why
        last_error: TargetError | None = None
        note: Deadline | None = None  # when to repeat the on_wait line
        pause = 0.02
        while True:
            now = time.time()
            live: list[tuple[int, TargetSpec]] = []
            for spec in specs:
                if spec.name in out:
                    continue
                health = self.health(spec.name)
                if health.backing_off(now):
                    out[spec.name] = health.describe_back_off(now)
                else:
                    live.append((health.consecutive_failures, spec))
            for _, spec in sorted(live, key=lambda pair: pair[0]):  # healthy boards first
                lock = self.locks.lock(spec.name)
                if not lock.try_acquire(purpose):
                    continue  # busy: wait for it
                try:
                    return self._checked_lease(spec, lock, purpose)
                except TargetError as exc:
                    lock.release()
                    if not what.startswith("tag:"):
                        raise  # the board asked for by name: its own error says most
                    out[spec.name], last_error = _reason(exc), exc
                except BaseException:  # anything else: never keep a board locked by mistake
                    lock.release()
                    raise
            busy = [s.name for s in specs if s.name not in out]
            if not busy:
                raise NoHealthyBoardError(what, out) from last_error
            if deadline.expired():
                holders = self.locks.holders(busy)
                raise BoardBusyError(what, timeout - deadline.remaining(), holders)
            if on_wait is not None and (note is None or note.expired()):
                on_wait(self._waiting_for(what, busy))
                note = Deadline(WAIT_NOTE_EVERY_S)
            # Nothing free: poll the locks again soon (cheap; no health checks). flock has
            # no timed wait, so this is how a lock with a timeout is taken (as filelock).
            time.sleep(min(pause, deadline.remaining()))
            pause = min(pause * 2, 0.5)

    def _waiting_for(self, what: str, busy: list[str]) -> str:
        held = []
        for board, h in self.locks.holders(busy).items():
            if h is None:
                held.append(f"{board} just released")
            elif not h.known:
                held.append(f"{board} held by {h.describe()}")
            else:
                purpose = h.purpose or "no purpose given"
                held.append(f"{board} held by pid {h.pid} ({h.user}@{h.host}, {purpose})")
        return f"waiting for {what}: {'; '.join(held)}"

    def _checked_lease(self, spec: TargetSpec, lock: LeaseLock, purpose: str) -> Lease:
        path = self._health_path(spec.name)
        health = Health.load(path)
        device = self._devices.get(spec.name) or self._device_factory(spec)
        try:
            facts = device.hello() if device.facts is not None else device.open()
        except TargetError as exc:
            device.close()
            self._devices.pop(spec.name, None)
            health.failed(_reason(exc), self.unhealthy_after, time.time())
            health.save(path)
            if health.consecutive_failures >= self.unhealthy_after:
                raise BoardUnhealthyError(
                    spec.name,
                    exc.step,
                    f"marked unhealthy after {health.consecutive_failures} failed checks; "
                    f"last: {str(exc).splitlines()[0]}",
                ) from exc
            raise
        health.passed(time.time())
        health.save(path)
        self._devices[spec.name] = device
        return Lease(spec, device, facts, time.time(), purpose, lock, self.lease_log)

    def status(self) -> list[BoardStatus]:
        """Each configured board with its holder (on any host the backend covers) and its
        health (as this host last saw it)."""
        holders = self.locks.holders(self.config.boards)
        return [
            BoardStatus(spec, holders[name], self.health(name))
            for name, spec in self.config.boards.items()
        ]

    def held_elsewhere(self) -> dict[str, Holder]:
        """Boards that this configuration does not name but someone holds now (another
        host's board in a shared lock server); empty with file locks."""
        return self.locks.held_elsewhere(self.config.boards)

    def close(self) -> None:
        for device in self._devices.values():
            device.close()
        self._devices.clear()
        self.locks.close()

    def __enter__(self) -> Farm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_lock_backend(
    lock_dir: Path, lock_url: str | None = None, configured: str | None = None
) -> LockBackend:
    """The farm's lock backend: PostgreSQL when ``lock_url``, ``$HWNAS_LOCK_URL`` or
    ``configured`` (``[farm] lock_url``) names a server, in that order; else lock files in
    ``lock_dir``. A URL that is not a PostgreSQL URL is a :class:`ConfigError`."""
    found = lock_url_from(lock_url, configured)
    if found is None:
        return FileLocks(lock_dir)
    from .pg_locks import PgLocks

    url, source = found
    return PgLocks(url, source)
