"""The board farm: exclusive leases across processes, tags, health, the lease log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwnas_bench import ConnectError, load_config
from hwnas_bench.farm import BoardBusyError, BoardUnhealthyError, Farm, NoHealthyBoardError
from hwnas_bench.health import Health

CONFIG = """
[boards.a]
transport = "local"
tags = ["cpu"]

[boards.b]
transport = "local"
tags = ["cpu"]

[boards.gone]
transport = "ssh"
host = "127.0.0.1"
port = 1
tags = ["flaky", "mix"]
timeout = 3

[boards.c]
transport = "local"
tags = ["mix"]
"""

#: Two boards that are down: nothing listens on port 1.
DOWN = """
[boards.orin-1]
transport = "ssh"
host = "127.0.0.1"
port = 1
tags = ["jetson"]
timeout = 3

[boards.orin-2]
transport = "ssh"
host = "127.0.0.1"
port = 1
tags = ["jetson"]
timeout = 3
"""

HOLDER = """
import sys
from hwnas_bench import load_config
from hwnas_bench.farm import Farm
farm = Farm(load_config(sys.argv[1]), lock_dir=__import__("pathlib").Path(sys.argv[2]),
            purpose="holder process")
lease = farm.lease(sys.argv[3])
print("HOLDING", lease.name, flush=True)
sys.stdin.read()  # hold until the parent closes our stdin (or kills us)
lease.release()
farm.close()
"""


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "hwnas.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def farm(config_path: Path, tmp_path: Path) -> Iterator[Farm]:
    with Farm(load_config(config_path), lock_dir=tmp_path / "locks", purpose="test") as f:
        yield f


def hold(config_path: Path, lock_dir: Path, what: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(config_path), str(lock_dir), what],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # waits on the pipe until the lease is held
    assert line.startswith("HOLDING"), line
    return proc


def test_lease_is_exclusive_across_processes_and_names_the_holder(
    farm: Farm, config_path: Path
) -> None:
    holder = hold(config_path, farm.lock_dir, "a")
    try:
        with pytest.raises(BoardBusyError) as info:
            farm.lease("a", timeout=0.3)
        message = str(info.value)
        assert f"a is held by pid {holder.pid}" in message
        assert "(holder process)" in message
        assert "after waiting 0 s" in message
    finally:
        holder.kill()
        holder.wait()
    # the kernel released the crashed holder's lock: no stale lock, no cleanup step
    with farm.lease("a", timeout=5) as lease:
        assert lease.facts["agent_version"]


def test_tag_lease_takes_a_free_board(farm: Farm, config_path: Path) -> None:
    holder = hold(config_path, farm.lock_dir, "a")
    try:
        with farm.lease("tag:cpu", timeout=5) as lease:
            assert lease.name == "b"
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_waiting_lease_gets_the_board_when_released(farm: Farm, config_path: Path) -> None:
    holder = hold(config_path, farm.lock_dir, "a")
    assert holder.stdin is not None
    holder.stdin.close()  # the holder releases and exits while we wait
    with farm.lease("a", timeout=30) as lease:
        assert lease.name == "a"
    holder.wait(timeout=30)


def test_unreachable_board_becomes_unhealthy(farm: Farm) -> None:
    for _ in range(2):
        with pytest.raises(ConnectError, match=r"127\.0\.0\.1:1"):
            farm.lease("gone", timeout=1)
    with pytest.raises(BoardUnhealthyError, match="marked unhealthy after 3 failed checks"):
        farm.lease("gone", timeout=1)
    (status,) = [s for s in farm.status() if s.spec.name == "gone"]
    assert status.health.consecutive_failures == 3
    assert status.holder is None
    # marked unhealthy: not probed again until its back-off has passed
    with pytest.raises(NoHealthyBoardError, match="gone unhealthy after 3 failed checks"):
        farm.lease("gone", timeout=600)
    assert farm.health("gone").consecutive_failures == 3


def test_lease_log_records_who_held_what_and_when(farm: Farm) -> None:
    with farm.lease("a") as first:
        pass
    with farm.lease("b"):
        pass
    records = [json.loads(line) for line in farm.lease_log.read_text().splitlines()]
    assert [r["board"] for r in records] == ["a", "b"]
    assert records[0]["pid"] == os.getpid()
    assert records[0]["start"] == first.acquired_at
    assert records[0]["start"] <= records[0]["end"] <= records[1]["start"]


def test_unknown_tag_and_board(farm: Farm) -> None:
    from hwnas_bench.errors import ConfigError, UnknownTargetError

    with pytest.raises(UnknownTargetError, match="no board has the tag 'gpu'"):
        farm.lease("tag:gpu")
    with pytest.raises(ConfigError, match="no board named 'd'"):
        farm.lease("d")


def test_holder_killed_by_signal_frees_the_board(farm: Farm, config_path: Path) -> None:
    holder = hold(config_path, farm.lock_dir, "b")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with farm.lease("b", timeout=5):
        pass


@pytest.fixture
def down_farm(tmp_path: Path) -> Iterator[Farm]:
    path = tmp_path / "down.toml"
    path.write_text(DOWN)
    with Farm(load_config(path), lock_dir=tmp_path / "locks", purpose="test") as f:
        yield f


@pytest.mark.timeout(120)
def test_tag_with_every_board_down_fails_at_once_naming_each(down_farm: Farm) -> None:
    import time

    start = time.monotonic()
    with pytest.raises(NoHealthyBoardError) as info:
        down_farm.lease("tag:jetson", timeout=600)
    assert time.monotonic() - start < 60  # not the lease timeout
    assert set(info.value.reasons) == {"orin-1", "orin-2"}
    for reason in info.value.reasons.values():
        assert reason.startswith("unreachable (")
        assert "127.0.0.1:1: connection refused (nothing listens on that port)" in reason
    assert "no healthy board for tag:jetson: orin-1 unreachable (" in str(info.value)
    # each board was probed once, not again and again until the timeout
    assert down_farm.health("orin-1").consecutive_failures == 1
    assert down_farm.health("orin-2").consecutive_failures == 1


@pytest.mark.timeout(120)
def test_unhealthy_board_is_rechecked_only_after_its_back_off(tmp_path: Path) -> None:
    import time

    path = tmp_path / "down.toml"
    path.write_text(DOWN)
    with Farm(load_config(path), lock_dir=tmp_path / "locks", unhealthy_after=1) as farm:
        with pytest.raises(NoHealthyBoardError):
            farm.lease("tag:jetson", timeout=600)
        health = farm.health("orin-1")
        assert health.consecutive_failures == 1
        assert health.retry_after is not None
        assert 20 < health.retry_after - time.time() <= 30
        with pytest.raises(NoHealthyBoardError, match="next check in") as info:
            farm.lease("tag:jetson", timeout=600)  # at once, probing nothing
        assert "unreachable" in info.value.reasons["orin-1"]
        assert farm.health("orin-1").consecutive_failures == 1
        # the back-off has passed: one more check, and a doubled back-off after it fails
        health.retry_after = time.time() - 1
        health.save(farm.lock_dir / "orin-1.health")
        with pytest.raises(NoHealthyBoardError):
            farm.lease("tag:jetson", timeout=600)
        again = farm.health("orin-1")
        assert again.consecutive_failures == 2
        assert again.retry_after is not None
        assert 50 < again.retry_after - time.time() <= 60
        assert farm.health("orin-2").consecutive_failures == 1  # still backing off


def test_board_that_comes_back_is_used_again(farm: Farm) -> None:
    import time

    marked = Health(consecutive_failures=5, last_error="c: connect: refused")
    marked.retry_after = time.time() + 300
    marked.save(farm.lock_dir / "c.health")
    with pytest.raises(NoHealthyBoardError, match="c unhealthy after 5 failed checks"):
        farm.lease("c", timeout=600)
    marked.retry_after = time.time() - 1  # its back-off is over
    marked.save(farm.lock_dir / "c.health")
    with farm.lease("c", timeout=30) as lease:
        assert lease.facts["agent_version"]
    assert farm.health("c").consecutive_failures == 0
    assert farm.health("c").retry_after is None


def test_waiting_lease_says_what_it_waits_for(farm: Farm, config_path: Path) -> None:
    holder = hold(config_path, farm.lock_dir, "a")
    messages: list[str] = []
    try:
        with pytest.raises(BoardBusyError):
            farm.lease("a", timeout=0.5, on_wait=messages.append)
    finally:
        holder.kill()
        holder.wait()
    assert len(messages) == 1, messages  # once when waiting starts, not on every poll
    assert messages[0].startswith(f"waiting for a: a held by pid {holder.pid} (")
    assert "holder process" in messages[0]


def test_busy_healthy_board_is_waited_for_while_the_others_are_down(
    farm: Farm, config_path: Path
) -> None:
    holder = hold(config_path, farm.lock_dir, "c")
    messages: list[str] = []
    try:
        with pytest.raises(BoardBusyError, match="c is held by"):
            farm.lease("tag:mix", timeout=1.0, on_wait=messages.append)
    finally:
        holder.kill()
        holder.wait()
    assert farm.health("gone").consecutive_failures == 1  # probed once in the whole wait
    assert "c held by pid" in messages[0]


MARKUP = "[/] [red]x[/red] :smile:"  # rich markup and an emoji code, to be shown as typed


def test_farm_status_shows_notes_names_and_errors_as_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lease note, a board name, its tags and its last error holding ``[/]`` (which
    crashed rich) or ``[red]`` (which restyled the table) are printed literally."""
    from hwnas_bench.cli.main import main

    config = tmp_path / "hwnas.toml"
    config.write_text(
        '[boards."[bold]pi[/bold]"]\ntransport = "local"\ntags = ["[/]", "[red]t"]\n'
        '[boards.a]\ntransport = "local"\n'
    )
    lock_dir = tmp_path / "locks"
    monkeypatch.setenv("HWNAS_LOCK_DIR", str(lock_dir))
    monkeypatch.delenv("HWNAS_LOCK_URL", raising=False)
    with Farm(load_config(config), lock_dir=lock_dir) as farm:
        Health(consecutive_failures=1, last_error=f"a: hello: {MARKUP}").save(lock_dir / "a.health")
        with farm.lease("[bold]pi[/bold]", purpose=MARKUP):
            assert main(["farm", "status", "--config", str(config)]) == 0
    said = capsys.readouterr()
    assert said.err == ""
    out = " ".join(said.out.split())
    assert "".join(f"boards (locks in {lock_dir})".split()) in "".join(out.split())
    assert f"[bold]pi[/bold] │ local │ [/], [red]t │ pid {os.getpid()} of " in out
    assert f"({MARKUP}) since " in out
    assert f"1 failed check(s): a: hello: {MARKUP}" in out
    assert "😄" not in out


def test_farm_status_escapes_the_lock_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hwnas_bench.cli.main import main

    lock_dir = tmp_path / "[/]locks"
    monkeypatch.setenv("HWNAS_LOCK_DIR", str(lock_dir))
    monkeypatch.delenv("HWNAS_LOCK_URL", raising=False)
    config = tmp_path / "hwnas.toml"
    config.write_text('[boards.a]\ntransport = "local"\n')
    assert main(["farm", "status", "--config", str(config)]) == 0
    squeezed = "".join(capsys.readouterr().out.split())  # the title wraps, even mid-word
    assert "".join(f"boards (locks in {lock_dir})".split()) in squeezed
