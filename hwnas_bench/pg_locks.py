"""Board locks that span hosts: PostgreSQL session-level advisory locks.

Each held board has its own database session that holds
``pg_try_advisory_lock(CLASS_ID, board_key(board))``. A session-level advisory lock lasts
until it is unlocked or the session ends, so a holder that crashes releases the board:

- the holder process dies (SIGKILL, a crash, OOM) on a host that stays up: its kernel
  closes the TCP connection, the server sees the end of the stream at once and ends the
  session; a waiting lease takes the board on its next poll (at most 0.5 s later);
- the holder's host vanishes (power, network): nothing closes the connection, so each
  session asks the server for TCP keepalives (:data:`SESSION_SETTINGS`: 10 s idle, then 3
  probes 5 s apart). The server ends the session, and the lock goes, about 25 s after the
  host went silent.

The two-int form with the fixed class id :data:`CLASS_ID` keeps these locks apart from the
user's own advisory locks (the one-bigint form never meets the two-int form in
``pg_locks``, and other two-int users would need this class id). Who holds a board is
noted in the table ``hwnas_leases`` (created if missing), written once the lock is won and
deleted on release; a note is believed only while ``pg_locks`` shows its session holding
the lock, so the note of a crashed holder is ignored (and overwritten by the next holder).

psycopg 3 is imported only when a lock URL is set: ``pip install 'hwnas-bench[distributed]'``.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigError, HwnasError
from .lock_url import check_lock_url, redact, url_password
from .locks import Holder, note_text

if TYPE_CHECKING:
    from types import ModuleType

    from psycopg import Connection

T = TypeVar("T")

#: The first key of every board lock: "hwnb" in ASCII (a positive int4).
CLASS_ID = int.from_bytes(b"hwnb", "big")
#: The second key 0 (no board's) serialises creating the table.
SCHEMA_KEY = 0
TABLE = "hwnas_leases"

#: libpq settings used unless the URL sets them: fail a connect to a dead server in 10 s,
#: and notice a server that vanished (client keepalives; 30 s for unacknowledged data).
CLIENT_DEFAULTS: dict[str, str] = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
    "application_name": "hwnas-bench board lock",
}
#: Server settings of each session: keepalives that end a vanished holder's session (and
#: so free its lock) in about 10 + 3 x 5 s; no idle timeout that would end a holding
#: session during a long benchmark; no statement that hangs the farm for more than 30 s.
SESSION_SETTINGS: dict[str, str] = {
    "tcp_keepalives_idle": "10",
    "tcp_keepalives_interval": "5",
    "tcp_keepalives_count": "3",
    "idle_in_transaction_session_timeout": "0",
    "statement_timeout": "30s",
}
#: Only from PostgreSQL 14 on; set where the server knows it.
IDLE_SESSION_TIMEOUT_SINCE = 140000

#: Idle sessions kept for the next try (a waiting lease polls every 0.5 s at most).
MAX_IDLE = 2

CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    board text PRIMARY KEY,
    lock_key bigint NOT NULL,
    backend_pid integer NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    holder_user text NOT NULL,
    purpose text NOT NULL,
    since text NOT NULL
)"""

WRITE_NOTE = f"""
INSERT INTO {TABLE} (board, lock_key, backend_pid, host, pid, holder_user, purpose, since)
VALUES (%(board)s, %(key)s, pg_backend_pid(), %(host)s, %(pid)s, %(user)s, %(purpose)s, %(since)s)
ON CONFLICT (board) DO UPDATE SET lock_key = EXCLUDED.lock_key,
    backend_pid = EXCLUDED.backend_pid, host = EXCLUDED.host, pid = EXCLUDED.pid,
    holder_user = EXCLUDED.holder_user, purpose = EXCLUDED.purpose, since = EXCLUDED.since"""

#: A board lock held by a live session in this database.
_LIVE_LOCK = """k.locktype = 'advisory' AND k.granted AND k.objsubid = 2
    AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND k.classid::bigint = %(cls)s"""

HOLDERS = f"""
SELECT k.objid::bigint, k.pid, host(a.client_addr),
       n.board, n.host, n.pid, n.holder_user, n.purpose, n.since
FROM pg_locks k
LEFT JOIN {TABLE} n ON n.lock_key = k.objid::bigint AND n.backend_pid = k.pid
LEFT JOIN pg_stat_activity a ON a.pid = k.pid
WHERE {_LIVE_LOCK} AND k.objid::bigint = ANY(%(keys)s::bigint[])"""

HELD_ELSEWHERE = f"""
SELECT n.board, n.host, n.pid, n.holder_user, n.purpose, n.since
FROM {TABLE} n
WHERE n.board <> ALL(%(known)s::text[]) AND EXISTS (
    SELECT 1 FROM pg_locks k
    WHERE {_LIVE_LOCK} AND k.objid::bigint = n.lock_key AND k.pid = n.backend_pid)
ORDER BY n.board LIMIT 200"""


class LockServerError(HwnasError):
    """The lock server could not be reached, or it failed a query. ``where`` is its URL
    without the password."""

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.where = where


def psycopg_module() -> ModuleType:
    """psycopg, or an error naming the extra that installs it."""
    try:
        import psycopg
    except ImportError as exc:
        raise HwnasError(
            "board locks in PostgreSQL need psycopg: pip install 'hwnas-bench[distributed]'"
        ) from exc
    return psycopg


def board_key(board: str) -> int:
    """The board's second lock key: stable on every host (a sha256 prefix), 1 to 2**31 - 1."""
    prefix = int.from_bytes(hashlib.sha256(board.encode()).digest()[:4], "big")
    return prefix % (2**31 - 1) + 1


def one_line(exc: BaseException, password: str | None = None) -> str:
    """A driver error as one line, without any password (libpq may quote the URL). The
    errors raised with it are raised ``from None``: a ``-v`` traceback would print the
    driver's own message, unredacted, as their cause."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return redact(text or type(exc).__name__, password)[:400]


def _holder(row: tuple[Any, ...]) -> Holder | None:
    """The holder a note row names (host, pid, user, purpose, since), or None if the row
    is not one hwnas-bench wrote (checked like a note in a shared lock directory)."""
    host, pid, user, purpose, since = row
    texts = [note_text(value) for value in (host, user, purpose, since)]
    if type(pid) is not int or pid <= 0 or any(t is None for t in texts):
        return None
    host, user, purpose, since = (t or "" for t in texts)
    return Holder(pid, host, user, purpose, since)


class PgLocks:
    """The PostgreSQL backend of the farm: ``PgLocks(url).lock(board)`` (see the module)."""

    def __init__(self, url: str, source: str = "lock_url") -> None:
        self._url = check_lock_url(url, source)
        self._source = source
        self._password = url_password(self._url)
        self.where = redact(self._url, self._password)
        self._psycopg = psycopg_module()
        try:
            self._given = self._psycopg.conninfo.conninfo_to_dict(self._url)
        except self._psycopg.Error as exc:
            raise ConfigError(
                f"{source}: not a valid PostgreSQL URL: {self.where} ({self.why(exc)})"
            ) from None
        self._idle: list[Connection[Any]] = []
        self._mutex = threading.Lock()
        self._table_ready = False

    def lock(self, board: str) -> PgBoardLock:
        return PgBoardLock(self, board)

    # -- sessions -------------------------------------------------------------------------

    def _connect(self) -> Connection[Any]:
        psycopg = self._psycopg
        extra = {key: value for key, value in CLIENT_DEFAULTS.items() if key not in self._given}
        try:
            conn: Connection[Any] = psycopg.connect(self._url, autocommit=True, **extra)
        except psycopg.ProgrammingError as exc:  # a parameter of the URL with a bad value
            raise ConfigError(f"{self._source}: {self.where}: {self.why(exc)}") from None
        except psycopg.Error as exc:
            raise LockServerError(
                f"cannot connect to the lock server {self.where}: {self.why(exc)}", self.where
            ) from None
        try:
            settings = dict(SESSION_SETTINGS)
            if conn.info.server_version >= IDLE_SESSION_TIMEOUT_SINCE:
                settings["idle_session_timeout"] = "0"
            calls = ", ".join("set_config(%s, %s, false)" for _ in settings)
            conn.execute(f"SELECT {calls}", [v for pair in settings.items() for v in pair])
            if not self._table_ready:
                self._create_table(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _create_table(self, conn: Connection[Any]) -> None:
        psycopg = self._psycopg
        try:
            row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()
            if not (row and row[0]):
                with conn.transaction():  # two hosts starting at once: one creates it
                    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (CLASS_ID, SCHEMA_KEY))
                    conn.execute(CREATE_TABLE)
        except psycopg.Error as exc:
            raise LockServerError(
                f"cannot create the table {TABLE} on the lock server {self.where}: "
                f"{self.why(exc)} (the role needs to own the database, or someone who "
                "does creates the table once: see docs/distributed.md)",
                self.where,
            ) from None
        self._table_ready = True

    def _take(self) -> tuple[Connection[Any], bool]:
        """An idle session (reused: True) or a new one."""
        with self._mutex:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed and not conn.broken:
                    return conn, True
                conn.close()
        return self._connect(), False

    def give(self, conn: Connection[Any]) -> None:
        """Keep a session that holds no lock for the next try, or close it."""
        psycopg = self._psycopg
        idle = psycopg.pq.TransactionStatus.IDLE
        if not conn.closed and not conn.broken and conn.info.transaction_status == idle:
            with self._mutex:
                if len(self._idle) < MAX_IDLE:
                    self._idle.append(conn)
                    return
        conn.close()

    def call(self, work: Callable[[Connection[Any]], T]) -> tuple[Connection[Any], T]:
        """Run ``work`` on a session and return both; the caller keeps the session or
        :meth:`give`s it back. An idle session that died meanwhile (the server restarted)
        is replaced by a new one once."""
        psycopg = self._psycopg
        conn, reused = self._take()
        while True:
            try:
                return conn, work(conn)
            except psycopg.OperationalError as exc:
                conn.close()
                if not reused:
                    raise self._failed(exc) from None
            except psycopg.Error as exc:
                conn.close()
                raise self._failed(exc) from None
            except BaseException:
                conn.close()  # a held lock (if any) goes with the session
                raise
            conn, reused = self._connect(), False

    def _query(self, work: Callable[[Connection[Any]], T]) -> T:
        conn, result = self.call(work)
        self.give(conn)
        return result

    def why(self, exc: BaseException) -> str:
        return one_line(exc, self._password)

    def _failed(self, exc: BaseException) -> LockServerError:
        return LockServerError(f"the lock server {self.where} failed: {self.why(exc)}", self.where)

    # -- who holds what -------------------------------------------------------------------

    def holders(self, boards: Iterable[str]) -> dict[str, Holder | None]:
        keys = {board: board_key(board) for board in boards}
        if not keys:
            return {}
        params = {"cls": CLASS_ID, "keys": sorted(set(keys.values()))}
        rows = self._query(lambda conn: conn.execute(HOLDERS, params).fetchall())
        sessions: dict[int, str] = {}  # key -> the holding session, for an unnoted holder
        notes: dict[int, dict[str, Holder | None]] = {}  # key -> board -> its note
        for key, backend, address, board, *note in rows:
            where = f" from {address}" if address else ""
            sessions[key] = f"PostgreSQL session pid {backend}{where}"
            if board is not None:
                notes.setdefault(key, {})[board] = _holder(tuple(note))
        found: dict[str, Holder | None] = {}
        for board, key in keys.items():
            if key not in sessions:
                found[board] = None
                continue
            noted = notes.get(key, {})
            # the board's own note; another board's only if their keys collide (2**-31)
            holder = noted.get(board) or next((h for h in noted.values() if h), None)
            found[board] = holder or Holder(
                0, "?", "?", f"no note in {TABLE} yet; {sessions[key]}", "?"
            )
        return found

    def held_elsewhere(self, known: Iterable[str]) -> dict[str, Holder]:
        params = {"cls": CLASS_ID, "known": list(known)}
        rows = self._query(lambda conn: conn.execute(HELD_ELSEWHERE, params).fetchall())
        found: dict[str, Holder] = {}
        for board, *note in rows:
            holder = _holder(tuple(note))
            name = note_text(board)
            if holder and name:
                found[name] = holder
        return found

    def close(self) -> None:
        with self._mutex:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class PgBoardLock:
    """One board's advisory lock, held by a session of its own from acquire to release."""

    def __init__(self, locks: PgLocks, board: str) -> None:
        self.board = board
        self.key = board_key(board)
        self._locks = locks
        self._conn: Connection[Any] | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def try_acquire(self, purpose: str = "") -> bool:
        """Take the lock if it is free and note who holds it; never blocks."""
        if self._conn is not None:
            return True
        me = Holder.me(purpose)
        note = {"board": self.board, "key": self.key, "host": me.host, "pid": me.pid}
        note |= {"user": me.user, "purpose": me.purpose, "since": me.since}

        def attempt(conn: Connection[Any]) -> bool:
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (CLASS_ID, self.key)
            ).fetchone()
            won = bool(row and row[0])
            if won:  # should writing the note fail, closing the session frees the lock
                conn.execute(WRITE_NOTE, note)
            return won

        conn, won = self._locks.call(attempt)
        if won:
            self._conn = conn
        else:
            self._locks.give(conn)
        return won

    def release(self) -> None:
        """Delete the note and unlock. A session that broke during the lease took the lock
        with it when it broke: that is a warning (someone may have used the board too)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        psycopg = psycopg_module()
        try:
            conn.execute(
                f"DELETE FROM {TABLE} WHERE board = %s AND backend_pid = pg_backend_pid()",
                (self.board,),
            )
            row = conn.execute("SELECT pg_advisory_unlock(%s, %s)", (CLASS_ID, self.key)).fetchone()
            still_held = bool(row and row[0])
        except psycopg.Error as exc:
            conn.close()
            why = self._locks.why(exc)
        else:
            if still_held:
                self._locks.give(conn)
                return
            conn.close()
            why = "the server no longer had it"
        warnings.warn(
            f"hwnas: the lock of {self.board} on {self._locks.where} was lost during the "
            f"lease ({why}); another process may have leased the board meanwhile",
            stacklevel=2,
        )

    def holder(self) -> Holder | None:
        """Who holds the board now, on any host; None if nobody or this object."""
        if self._conn is not None:
            return None
        return self._locks.holders([self.board])[self.board]
