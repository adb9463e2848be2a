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
from hwnas_bench.farm import BoardBusyError, BoardUnhealthyError, Farm

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
tags = ["flaky"]
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
    from hwnas_bench import ConfigError

    with pytest.raises(ConfigError, match="no board has the tag 'gpu'"):
        farm.lease("tag:gpu")
    with pytest.raises(ConfigError, match="no board named 'c'"):
        farm.lease("c")


def test_holder_killed_by_signal_frees_the_board(farm: Farm, config_path: Path) -> None:
    holder = hold(config_path, farm.lock_dir, "b")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with farm.lease("b", timeout=5):
        pass
