"""A throwaway PostgreSQL server on 127.0.0.1 for the tests (Debian ``postgresql``).

``initdb`` makes a cluster in a work directory, ``pg_ctl`` starts it on a free port with
trust authentication for 127.0.0.1 and its unix socket in the work directory, and
:meth:`PostgresServer.stop` stops it (``pg_ctl stop -m immediate``). PostgreSQL refuses
to run as root, so as root both run as an unprivileged user (``postgres``, which the
Debian package creates, else ``nobody``) through ``runuser`` or ``setpriv``; the work
directory is then a fresh one in the system temp directory owned by that user (pytest's
own temp directories are private to root). As any other user they run directly.

Each test that needs an empty database gets one from :meth:`PostgresServer.new_database`,
owned by the unprivileged role ``farm`` (as docs/distributed.md sets it up).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hwnas_bench.testing import MissingPart

#: The role that owns each test database: not a superuser, as on a real server.
ROLE = "farm"
SUPERUSER = "hwnas_admin"
INSTALL_HINT = "Debian: apt-get install postgresql"


def find_bin_dir() -> Path:
    """The directory with ``initdb`` and ``pg_ctl``: Debian's newest
    ``/usr/lib/postgresql/N/bin``, else wherever ``PATH`` has them."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.parent.name)],
    )
    for initdb in reversed(debian):
        if os.access(initdb.parent / "pg_ctl", os.X_OK):
            return initdb.parent
    initdb_path, pg_ctl_path = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb_path and pg_ctl_path:
        return Path(os.path.realpath(initdb_path)).parent
    raise MissingPart(f"PostgreSQL's 'initdb' and 'pg_ctl' not found ({INSTALL_HINT})")


def _run_as() -> tuple[str | None, list[str]]:
    """The user to run the server as, and the command prefix that switches to it."""
    if os.geteuid() != 0:
        return None, []
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            break
    else:
        raise MissingPart("running as root, and neither user 'postgres' nor 'nobody' exists")
    runuser, setpriv = shutil.which("runuser"), shutil.which("setpriv")
    if runuser:
        return name, [runuser, "-u", name, "--"]
    if setpriv:
        return name, [setpriv, f"--reuid={name}", f"--regid={name}", "--init-groups", "--"]
    raise MissingPart("running as root, and neither 'runuser' nor 'setpriv' is installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    workdir: Path
    port: int
    bin_dir: Path
    prefix: list[str]  #: runs a command as the server's user (empty: as ourselves)
    remove_workdir: bool
    _names: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def url(self) -> str:
        """The superuser's URL of the ``postgres`` database."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def url_of(self, database: str, user: str = ROLE) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new, empty database owned by :data:`ROLE`; its URL (as that role)."""
        import psycopg

        name = f"farm_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {ROLE}")
        return self.url_of(name)

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / "server.log").read_text(errors="replace")[-2000:]
        return ""

    def stop(self) -> None:
        pg_ctl = str(self.bin_dir / "pg_ctl")
        subprocess.run(
            [*self.prefix, pg_ctl, "stop", "-D", str(self.data_dir), "-m", "immediate", "-w"],
            cwd=self.workdir,
            capture_output=True,
            check=False,
        )
        if self.remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def start_postgres(workdir: Path, timeout: float = 60.0) -> PostgresServer:
    """Start a server for the tests (see the module); :class:`MissingPart` when PostgreSQL
    or psycopg is not installed."""
    bin_dir = find_bin_dir()
    try:
        import psycopg
    except ImportError as exc:
        raise MissingPart("psycopg not installed (pip install 'hwnas-bench[test]')") from exc
    user, prefix = _run_as()
    remove = False
    if user is not None:  # pytest's temp dirs are 0700 root: the server's user cannot enter
        workdir = Path(tempfile.mkdtemp(prefix="hwnas-pg-"))
        entry = pwd.getpwnam(user)
        os.chown(workdir, entry.pw_uid, entry.pw_gid)
        remove = True
    workdir.mkdir(parents=True, exist_ok=True)
    server = PostgresServer(workdir, _free_port(), bin_dir, prefix, remove)

    def run(*argv: str) -> None:
        done = subprocess.run(
            [*prefix, *argv], cwd=workdir, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip()[-1500:]
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {detail}")

    try:
        run(
            str(bin_dir / "initdb"),
            *("-D", str(server.data_dir), "-U", SUPERUSER, "-E", "UTF8", "--no-sync"),
            *("--auth-local=trust", "--auth-host=trust"),  # 127.0.0.1 and ::1
        )
        options = " ".join(
            [
                f"-p {server.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={workdir}",
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            ]
        )
        run(
            str(bin_dir / "pg_ctl"),
            *("start", "-D", str(server.data_dir), "-l", str(workdir / "server.log")),
            *("-w", "-t", str(int(timeout)), "-o", options),
        )
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {ROLE} LOGIN")
    except BaseException as exc:
        log = server.log_tail()
        server.stop()
        if isinstance(exc, (RuntimeError, subprocess.TimeoutExpired)):
            raise RuntimeError(f"PostgreSQL did not start: {exc}\n{log}") from exc
        raise
    return server
