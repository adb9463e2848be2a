"""Leases that span hosts: the farm's PostgreSQL lock backend, against a real server.

"Another host" is a process with a lock directory of its own: only the PostgreSQL lock
can keep it and this process off the same board.
"""

from __future__ import annotations

import datetime
import getpass
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwnas_bench import Config, ConfigError, LockServerError, load_config
from hwnas_bench.cli.main import main
from hwnas_bench.farm import BoardBusyError, Farm
from hwnas_bench.lock_url import redact, url_password
from hwnas_bench.pg_locks import CLASS_ID, TABLE, board_key

CONFIG = """
[boards.a]
transport = "local"
tags = ["cpu"]

[boards.b]
transport = "local"
tags = ["cpu"]
"""

#: Holds the boards named on its command line until its stdin closes (or it is killed).
HOLDER = """
import sys
from pathlib import Path
from hwnas_bench import load_config
from hwnas_bench.farm import Farm
farm = Farm(load_config(sys.argv[1]), lock_dir=Path(sys.argv[2]), purpose="holder process")
leases = [farm.lease(what, timeout=30) for what in sys.argv[3:]]
print("HOLDING", *(lease.name for lease in leases), flush=True)
sys.stdin.read()
for lease in leases:
    lease.release()
farm.close()
"""

#: Leases board a ROUNDS times once told to go; prints when it asked, got and let go.
CONTENDER = """
import json, sys, time
from pathlib import Path
from hwnas_bench import load_config
from hwnas_bench.farm import Farm
config, lock_dir = sys.argv[1], Path(sys.argv[2])
rounds, hold = int(sys.argv[3]), float(sys.argv[4])
with Farm(load_config(config), lock_dir=lock_dir, purpose="contender") as farm:
    print("READY", flush=True)
    sys.stdin.readline()
    for _ in range(rounds):
        asked = time.time()
        with farm.lease("a", timeout=60) as lease:
            time.sleep(hold)  # stands in for a benchmark on the board
        print(json.dumps({"asked": asked, "start": lease.acquired_at, "end": lease.released_at}),
              flush=True)
        time.sleep(hold / 2)  # between two measurements
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "hwnas.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def farm(config_path: Path, tmp_path: Path, postgres_url: str) -> Iterator[Farm]:
    with Farm(
        load_config(config_path), lock_dir=tmp_path / "here", lock_url=postgres_url, purpose="test"
    ) as f:
        yield f


def other_host(
    script: str, url: str, config: Path, lock_dir: Path, *args: str
) -> subprocess.Popen[str]:
    """A python process with its own lock directory, leasing through ``url``."""
    return subprocess.Popen(
        [sys.executable, "-c", script, str(config), str(lock_dir), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "HWNAS_LOCK_URL": url},
    )


def hold(url: str, config: Path, lock_dir: Path, *boards: str) -> subprocess.Popen[str]:
    proc = other_host(HOLDER, url, config, lock_dir, *boards)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # waits on the pipe until the leases are held
    assert line.split() == ["HOLDING", *boards], line
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()


def test_two_processes_never_hold_one_board_at_once(
    postgres_url: str, config_path: Path, tmp_path: Path
) -> None:
    dirs = [tmp_path / "host-1", tmp_path / "host-2"]
    procs = [other_host(CONTENDER, postgres_url, config_path, d, "4", "0.2") for d in dirs]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "READY\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    finally:
        for proc in procs:
            stop(proc)
    assert [proc.returncode for proc in procs] == [0, 0]
    # the lease log of each "host" (its own lock directory): who held the board, and when
    log = [json.loads(line) for d in dirs for line in (d / "leases.jsonl").read_text().splitlines()]
    assert len(log) == 8
    assert {r["pid"] for r in log} == {p.pid for p in procs}
    assert {r["host"] for r in log} == {socket.gethostname()}
    log.sort(key=lambda r: r["start"])
    for before, after in itertools.pairwise(log):
        assert before["end"] <= after["start"], (before, after)  # never both at once
    # and they did contend: a lease of one ended while the other waited for the board
    seen = [(json.loads(line), i) for i, out in enumerate(outputs) for line in out.splitlines()]
    waited = [
        mine
        for mine, i in seen
        for theirs, j in seen
        if i != j and mine["asked"] < theirs["end"] <= mine["start"]
    ]
    assert waited, seen


def test_the_losers_timeout_names_the_holder(
    farm: Farm, postgres_url: str, config_path: Path, tmp_path: Path
) -> None:
    holder = hold(postgres_url, config_path, tmp_path / "there", "a")
    messages: list[str] = []
    try:
        with pytest.raises(BoardBusyError) as info:
            farm.lease("a", timeout=0.5, on_wait=messages.append)
    finally:
        stop(holder)
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    message = str(info.value)
    assert message.startswith("a: no board free after waiting 0 s: a is held by ")
    assert f"a is held by pid {holder.pid} of {me} (holder process) since " in message
    since = datetime.datetime.fromisoformat(message.rsplit(" since ", 1)[1])
    age = datetime.datetime.now(datetime.timezone.utc) - since
    assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=1)
    assert messages == [f"waiting for a: a held by pid {holder.pid} ({me}, holder process)"]


def test_a_sigkilled_holder_frees_the_board_within_seconds(
    farm: Farm, postgres_url: str, config_path: Path, tmp_path: Path
) -> None:
    holder = hold(postgres_url, config_path, tmp_path / "there", "a")
    waiting, leased = threading.Event(), threading.Event()
    got: dict[str, object] = {}

    def wait_for_the_board() -> None:  # the other process, waiting for the board
        try:
            with farm.lease("a", timeout=30, on_wait=lambda _: waiting.set()) as lease:
                got["at"], got["lease"] = time.monotonic(), lease.name
        except Exception as exc:
            got["error"] = exc
        leased.set()

    waiter = threading.Thread(target=wait_for_the_board)
    waiter.start()
    try:
        assert waiting.wait(30), got
        killed = time.monotonic()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert leased.wait(30), "the killed holder's lock was never released"
    finally:
        waiter.join(60)
        stop(holder)
    assert got["lease"] == "a", got
    took = got["at"] - killed  # type: ignore[operator]
    # the server ends the session at once; then a poll and a hello (an agent start): well
    # under the 30 s the waiter would wait for a lock that was never released
    assert took < 15.0


def test_a_tag_lease_takes_the_board_nobody_else_holds(
    farm: Farm, postgres_url: str, config_path: Path, tmp_path: Path
) -> None:
    holder = hold(postgres_url, config_path, tmp_path / "there", "a")
    try:
        with farm.lease("tag:cpu", timeout=5) as lease:
            assert lease.name == "b"
            assert farm.locks.holders(["a"])["a"] is not None
    finally:
        stop(holder)


def test_farm_status_lists_holders_from_another_process(
    postgres_url: str,
    config_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    theirs = tmp_path / "theirs.toml"  # the other host also has a board this one lacks
    theirs.write_text(CONFIG + '\n[boards.far]\ntransport = "local"\n')
    holder = hold(postgres_url, theirs, tmp_path / "there", "a", "far")
    monkeypatch.setenv("HWNAS_LOCK_URL", postgres_url)
    try:
        assert main(["farm", "status", "--config", str(config_path)]) == 0
    finally:
        stop(holder)
    out = " ".join(capsys.readouterr().out.split())  # the title may wrap
    assert f"locks in {postgres_url}" in out
    assert f"a │ local │ cpu │ pid {holder.pid} of {getpass.getuser()}@" in out
    assert "b │ local │ cpu │ free" in out
    assert f"far │ - │ - │ pid {holder.pid} of " in out
    assert "not in this configuration" in out


def test_farm_status_shows_what_the_database_says_as_typed(
    farm: Farm,
    postgres_url: str,
    config_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Board names and notes read from the lock server's table, holding rich markup
    (``[/]`` crashed the table, ``[red]`` restyled it), are printed as they are."""
    import psycopg

    with farm.lease("a"):
        pass  # creates the table
    board, note = "[/]far[red]", "[red]x[/red] [/] :smile:"
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # another host's lease
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (CLASS_ID, board_key(board)))
        conn.execute(
            f"INSERT INTO {TABLE} VALUES (%s, %s, pg_backend_pid(), '[b]h', 4242, '[i]ana', "
            "%s, '[/]t')",
            (board, board_key(board), note),
        )
        monkeypatch.setenv("HWNAS_LOCK_URL", postgres_url)
        assert main(["farm", "status", "--config", str(config_path)]) == 0
    said = capsys.readouterr()
    assert said.err == ""
    out = " ".join(said.out.split())
    assert f"{board} │ - │ - │ pid 4242 of [i]ana@[b]h ({note}) since [/]t │ not in" in out
    assert "😄" not in out


def test_a_stale_note_of_a_crashed_holder_is_ignored(farm: Farm, postgres_url: str) -> None:
    import psycopg

    with farm.lease("a"):
        pass  # creates the table
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {TABLE} VALUES ('a', %s, 999999, 'gone', 4242, 'ana', 'old', 'x')",
            (board_key("a"),),
        )
        assert farm.locks.holders(["a", "b"]) == {"a": None, "b": None}
        assert farm.held_elsewhere() == {}
        with farm.lease("a") as lease:  # the next holder writes its own note over it
            row = conn.execute(f"SELECT pid, purpose FROM {TABLE} WHERE board = 'a'").fetchone()
            assert row == (os.getpid(), "test")
            assert lease.name == "a"
        assert conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (0,)


def test_a_lock_without_a_note_names_the_session(farm: Farm, postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (CLASS_ID, board_key("a")))
        backend = conn.info.backend_pid
        with pytest.raises(BoardBusyError) as info:
            farm.lease("a", timeout=0.2)
    assert str(info.value).endswith(
        f"a is held by an unknown process (no note in {TABLE} yet; "
        f"PostgreSQL session pid {backend} from 127.0.0.1)"
    )


def test_the_users_own_advisory_locks_do_not_collide(farm: Farm, postgres_url: str) -> None:
    import psycopg

    same_bits = (CLASS_ID << 32) | board_key("a")  # the one-bigint form, same 64 bits
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s), pg_advisory_lock(%s)", (same_bits, CLASS_ID))
        with farm.lease("a", timeout=2) as lease:
            assert lease.name == "a"


def test_lock_url_from_hwnas_toml(config_path: Path, tmp_path: Path, postgres_url: str) -> None:
    import psycopg

    config_path.write_text(CONFIG + f'\n[farm]\nlock_url = "{postgres_url}"\n')
    config = load_config(config_path)
    assert config.lock_url == postgres_url
    with Farm(config, lock_dir=tmp_path / "here", purpose="from toml") as farm:
        assert farm.locks.where == postgres_url
        with farm.lease("b"), psycopg.connect(postgres_url) as conn:
            row = conn.execute(f"SELECT board, purpose FROM {TABLE}").fetchall()
            assert row == [("b", "from toml")]


def test_a_session_lost_during_the_lease_is_a_warning(farm: Farm, postgres_url: str) -> None:
    import psycopg

    lease = farm.lease("a")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        (backend,) = conn.execute(f"SELECT backend_pid FROM {TABLE}").fetchone() or (0,)
        conn.execute("SELECT pg_terminate_backend(%s)", (backend,))  # the server restarted
    with pytest.warns(UserWarning, match="the lock of a on .* was lost during the lease"):
        lease.release()
    with farm.lease("a", timeout=5):  # a new session for the next lease
        pass


def test_the_password_is_never_shown(
    config_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    postgres_url: str,
) -> None:
    with_password = postgres_url.replace("farm@", "farm:s3cret-pw@")  # trust: not checked
    monkeypatch.setenv("HWNAS_LOCK_URL", with_password)
    assert main(["farm", "status", "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "s3cret-pw" not in out
    assert "farm:***@127.0.0.1" in " ".join(out.split())


# -- mistakes: no server needed ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mysql://ana:s3cret-pw@db/hwnas", "must be a postgresql:// or postgres:// URL"),
        ("db.lab:5432", "must be a postgresql:// or postgres:// URL"),
        ("host=db password=s3cret-pw", "must be a postgresql:// or postgres:// URL"),
        ("postgresql://ana:s3cret-pw@db:54x32/hwnas", "port '54x32' is not a number"),
        ("postgresql://ana:s3cret-pw@[::1/hwnas", "the IPv6 address '[::1' has no closing ']'"),
    ],
)
def test_a_bad_lock_url_is_one_line_and_exit_2(
    url: str, why: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HWNAS_LOCK_URL", url)
    assert main(["farm", "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"hwnas: error: HWNAS_LOCK_URL: {why}")
    assert err.count("\n") == 1
    assert "s3cret-pw" not in err


def test_a_bad_farm_table_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hwnas.toml"
    path.write_text('[farm]\nlock_url = "redis://ana:s3cret-pw@db"\n')
    with pytest.raises(ConfigError, match=r"hwnas\.toml: \[farm\] lock_url: must be a") as info:
        load_config(path)
    assert "s3cret-pw" not in str(info.value)
    path.write_text('[farm]\nlock_uri = "postgresql://db/hwnas"\n')
    with pytest.raises(ConfigError, match=r"key 'lock_uri': unknown key in \[farm\]"):
        load_config(path)


def need_psycopg() -> None:
    from hwnas_bench.testing import MissingPart

    from .conftest import missing_part

    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing_part(MissingPart("psycopg not installed (pip install 'hwnas-bench[test]')"))


def test_a_server_that_is_down_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    need_psycopg()
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HWNAS_LOCK_URL", f"postgresql://ana:s3cret-pw@127.0.0.1:{port}/hwnas")
    assert main(["farm", "status"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"hwnas: error: cannot connect to the lock server postgresql://ana:***@127.0.0.1:{port}"
        "/hwnas: connection failed: "
    )
    assert "Connection refused" in err
    assert err.count("\n") == 1
    assert "s3cret-pw" not in err
    with pytest.raises(LockServerError) as info, Farm(Config(), lock_dir=tmp_path) as farm:
        farm.lease("local", timeout=1)
    assert info.value.where == f"postgresql://ana:***@127.0.0.1:{port}/hwnas"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://ana:pw@db/x", "postgresql://ana:***@db/x"),
        (
            "postgres://ana@db/x?password=pw&sslmode=require",
            "postgres://ana@db/x?password=***&sslmode=require",
        ),
        ('failed: "postgresql://ana:pw@[::1/x"', 'failed: "postgresql://ana:***@[::1/x"'),
        ("host=db password='p w' user=ana", "host=db password=*** user=ana"),
        ("postgresql://db/x", "postgresql://db/x"),
        # a password holding / ? # @ or a space: up to the last @, whether or not it parses
        (
            "cannot open postgresql://u:p/a?b c@127.0.0.1:1/db: refused",
            "cannot open postgresql://u:***@127.0.0.1:1/db: refused",
        ),
        ("postgresql://u:p#a@b@h/db", "postgresql://u:***@h/db"),
        ("got 'postgresql:/u:p/w@h'", "got 'postgresql:/u:***@h'"),  # one slash: a typo
        ("a: postgresql://u:Qz Kj@h\nb: x@y", "a: postgresql://u:***@h\nb: x@y"),
        ("https://sqlalche.me/e/20/e3q8 (no user)", "https://sqlalche.me/e/20/e3q8 (no user)"),
        # several URLs on a line: each to the last @ before the next one
        (
            "use postgresql://user@host/db (or sqlite:///f.db), got 'mysql://a:pw@db/x'",
            "use postgresql://user@host/db (or sqlite:///f.db), got 'mysql://a:***@db/x'",
        ),
        ("postgres://a:x@h1 and postgres://b:y@h2", "postgres://a:***@h1 and postgres://b:***@h2"),
        ("postgresql://u:xx:/yy@h", "postgresql://u:***@h"),  # a scheme-like piece inside
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redact_replaces_the_password_wherever_it_appears() -> None:
    url = "postgresql://ana:p%40ss-word@db/x"
    assert url_password(url) == "p%40ss-word"
    assert redact("auth p@ss-word failed", url_password(url)) == "auth *** failed"
    assert url_password("postgresql://ana@db/x") is None
    assert url_password("postgresql://u:p/a?b c@127.0.0.1:1/db") == "p/a?b c"
    assert redact("quoted 'p/a?b c'", "p/a?b c") == "quoted '***'"


def pieces(password: str) -> list[str]:
    """Every 3 characters in a row of ``password``: none of them may be shown."""
    return [password[i : i + 3] for i in range(len(password) - 2)]


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("Qz/xK?jW", "an '@' after a '/' or a second '@': percent-encode"),
        ("Qz?xK jW", "a URL holds no spaces"),
        ("Qz x", "a URL holds no spaces"),  # too short to be replaced word for word
        ("Qz@xK", "an '@' after a '/' or a second '@'"),
        ("Q%zz", "a '%' in the URL starts no %XX escape"),
        ("Qx%00", "a '%' in the URL starts no %XX escape"),
    ],
)
@pytest.mark.parametrize("verbose", [False, True])
def test_a_password_libpq_would_misread_is_refused_unshown(
    password: str,
    why: str,
    verbose: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """libpq ends the user part at the first ``/`` and quotes what it cannot decode: such a
    URL is refused before it gets there, and no piece of the password is printed, with or
    without -v."""
    monkeypatch.setenv("HWNAS_LOCK_URL", f"postgresql://ana:{password}@127.0.0.1:1/hwnas")
    assert main([*(["-v"] if verbose else []), "farm", "status"]) == 2
    said = capsys.readouterr()
    assert said.err.startswith(f"hwnas: error: HWNAS_LOCK_URL: {why}")
    assert "postgresql://ana:***@127.0.0.1:1/hwnas" in said.err
    for piece in pieces(password):
        assert piece not in said.out + said.err, piece


@pytest.mark.parametrize(
    "query", ["", "?application_name=x", "?bogus=1", "?password=Qz%zzKj", "?password=Qz=Kj"]
)
def test_a_driver_error_is_not_chained_into_the_verbose_traceback(
    query: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-v`` prints the traceback: psycopg's own error, which may quote the URL, is not
    part of it (not even as the cause), and the password is in no line."""
    need_psycopg()
    password = "Qz?x#K-jW"  # ? and # are fine in a libpq user part
    monkeypatch.setenv("HWNAS_LOCK_URL", f"postgresql://ana:{password}@127.0.0.1:1/hwnas{query}")
    assert main(["-v", "farm", "status"]) in (1, 2)
    err = capsys.readouterr().err
    assert err.startswith("hwnas: error: ")
    assert "postgresql://ana:***@127.0.0.1:1/hwnas" in err
    assert "direct cause" not in err
    assert "During handling" not in err
    assert "psycopg." not in err.split("Traceback", 1)[-1]  # no driver exception in it
    for piece in [*pieces(password), "Qz%zz", "Qz=Kj"]:
        assert piece not in err, piece


def test_a_holding_session_asks_for_keepalives_and_no_idle_timeout(farm: Farm) -> None:
    """What bounds the release when a holder's host vanishes (about 10 + 3 x 5 s), and
    what keeps a server's idle timeout from ending a long benchmark's lease."""
    expected = {
        "tcp_keepalives_idle": "10",
        "tcp_keepalives_interval": "5",
        "tcp_keepalives_count": "3",
        "idle_session_timeout": "0",
        "idle_in_transaction_session_timeout": "0",
    }
    with farm.lease("a") as lease:
        conn = lease._lock._conn  # type: ignore[attr-defined]
        shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in expected}
    assert shown == expected
