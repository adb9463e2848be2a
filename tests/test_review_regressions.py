"""Failure modes found in review, each pinned by a test: an orphaned benchmark, a leaked
board lock, a lost lease log, memory counted from the previous model, a slow clean line
mistaken for a lossy one, a shared lock directory, a result lost to an unwritable file."""

from __future__ import annotations

import os
import select
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwnas_bench import DeployError, Device, DeviceTimeoutError, load_config
from hwnas_bench.cli.main import main
from hwnas_bench.farm import Farm
from hwnas_bench.locks import BoardLock
from hwnas_bench.targets import serial_target
from hwnas_bench.testing import (
    FaultyRelay,
    MissingPart,
    SSHServer,
    start_pty_pair,
    start_serial_agent,
    start_sshd,
)

from .conftest import missing_part

LONG = {"min_iterations": 10, "min_time_s": 60.0, "max_time_s": 60.0, "warmup_min_s": 0.0}


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait on the process itself (pidfd), not on a clock."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def test_local_agent_stops_benchmarking_when_the_host_gives_up(
    local_device: Device, conv_model: Path
) -> None:
    local_device.open()
    proc = local_device.transport._proc  # type: ignore[attr-defined]
    with pytest.raises(DeviceTimeoutError):
        local_device.bench(conv_model, timeout=3, **LONG)
    # close() closed the agent's pipes: its next heartbeat fails, the loop aborts, it exits
    assert proc.wait(timeout=5) == 0


def test_remote_agent_stops_benchmarking_when_the_host_gives_up(
    ssh_device: Device, conv_model: Path
) -> None:
    pid = ssh_device.open()["pid"]  # the board is this machine: its pid is visible here
    with pytest.raises(DeviceTimeoutError):
        ssh_device.bench(conv_model, timeout=3, **LONG)
    assert wait_for_exit(pid, timeout=10), "the agent ran on after the host gave up"


@pytest.fixture(scope="module")
def sshd_without_sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    try:
        server = start_sshd(tmp_path_factory.mktemp("nosftp"), sftp=False)
    except MissingPart as exc:
        missing_part(exc)
    yield server
    server.stop()


def test_board_without_sftp_is_a_clear_error_and_keeps_no_lock(
    sshd_without_sftp: SSHServer, tmp_path: Path
) -> None:
    import shutil

    from hwnas_bench.deploy import REMOTE_AGENT_DIR

    shutil.rmtree(Path.home() / REMOTE_AGENT_DIR, ignore_errors=True)  # force a deploy
    config = tmp_path / "hwnas.toml"
    config.write_text(sshd_without_sftp.board_toml("tiny"))
    with Farm(load_config(config), lock_dir=tmp_path / "locks") as farm:
        for _ in range(2):  # the second try must meet the same error, not "board busy"
            with pytest.raises(DeployError, match="offers no SFTP"):
                farm.lease("tiny", timeout=1)


def test_unwritable_lease_log_still_frees_the_board(tmp_path: Path) -> None:
    config = tmp_path / "hwnas.toml"
    config.write_text('[boards.a]\ntransport = "local"\n')
    with Farm(load_config(config), lock_dir=tmp_path / "locks") as farm:
        farm.lease_log.mkdir()  # stands in for a full disk or a permission error
        lease = farm.lease("a")
        with pytest.warns(UserWarning, match="lease log"):
            lease.release()
        with pytest.warns(UserWarning, match="lease log"), farm.lease("a", timeout=1):
            pass  # leased again at once: the board was freed


def test_lock_files_are_group_writable_despite_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        lock = BoardLock(tmp_path, "pi5")
        assert lock.try_acquire("test")
        assert stat.S_IMODE(lock.path.stat().st_mode) == 0o664
        lock.release()
    finally:
        os.umask(old)


def test_peak_memory_does_not_count_the_previous_model(
    local_device: Device, mlp_model: Path, tmp_path: Path
) -> None:
    import sys

    import onnx

    sys.path.insert(0, str(mlp_model.parent))
    from make_models import mlp

    sys.path.remove(str(mlp_model.parent))
    big = tmp_path / "big.onnx"
    onnx.save(mlp(hidden=4096, features=4096, seed=1), big)  # ~67 MB of weights
    fast = {"min_iterations": 3, "min_time_s": 0.05, "warmup_min_s": 0.0}
    alone = local_device.bench(mlp_model, **fast).memory.peak_rss_mb
    after_big = local_device.bench(big, **fast).memory.peak_rss_mb
    again = local_device.bench(mlp_model, **fast).memory.peak_rss_mb
    assert alone is not None
    assert after_big is not None
    assert again is not None
    assert after_big > alone + 50
    assert again < alone + 20, f"small model after big: {again} MB vs {alone} MB alone"


def test_slow_clean_line_needs_no_resends(tmp_path: Path, mlp_model: Path) -> None:
    """A UART slower than the host assumes: replies take long to arrive, but arrive whole."""
    try:
        agent_side, host_side = start_pty_pair(tmp_path, "a"), start_pty_pair(tmp_path, "h")
    except MissingPart as exc:
        missing_part(exc)
    relay = FaultyRelay(agent_side.b, host_side.a, corrupt_rate=0, drop_rate=0, bytes_per_s=40_000)
    agent = start_serial_agent(agent_side.a, tmp_path / "cache")
    device = serial_target(f"{host_side.b}@4000000").device(timeout=120)
    try:
        # Hellos sent before the agent is up are resent, as many times as a loaded machine
        # takes to start it: that is no line fault, so count only from a greeted agent on.
        device.open()
        resends_at_start = device.channel.stats.resends
        m = device.bench(mlp_model, min_iterations=3000, min_time_s=0.0, warmup_min_s=0.0)
        assert m.latency.n >= 3000  # 24 KB of samples, fetched over a 40 KB/s line
        stats = device.channel.stats
        assert stats.naks_sent == 0, stats
        assert stats.resends == resends_at_start, stats
    finally:
        device.close()
        agent.kill()
        agent.wait()
        relay.stop()
        agent_side.stop()
        host_side.stop()


def test_unwritable_json_keeps_the_result(
    mlp_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "bench",
            str(mlp_model),
            "--min-time",
            "0.05",
            "--warmup-time",
            "0",
            "--json",
            "/proc/no/such/m.json",
        ]
    )
    assert code == 1
    captured = capsys.readouterr()
    assert "median ms" in captured.out  # the table was printed before the write failed
    (line,) = captured.err.strip().splitlines()
    assert "cannot write the measurement to /proc/no/such/m.json" in line
    saved = Path(line.rsplit("saved to ", 1)[1].split(" instead")[0])
    assert '"schema": "hwnas.measurement/1"' in saved.read_text()
    saved.unlink()


def test_min_time_longer_than_the_default_cap(
    mlp_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hwnas_bench import BenchSettings

    with pytest.raises(ValueError, match="min_time_s must not exceed max_time_s"):
        BenchSettings(min_time_s=120).validate()
    from hwnas_bench.cli.bench import settings_from
    from hwnas_bench.cli.main import build_parser

    args = build_parser().parse_args(["bench", str(mlp_model), "--min-time", "120"])
    assert settings_from(args).max_time_s == 240  # the CLI raises the cap with the minimum


def test_an_aborted_window_still_stops_the_power_sampler(mlp_model: Path) -> None:
    from device_agent.errors import AgentError
    from device_agent.protocol import BenchSettings, ErrorCode
    from device_agent.runner import LoopProgress, create_session, timed_loop

    settings = BenchSettings(warmup_min_s=0.0, min_time_s=30.0, max_time_s=30.0)
    session = create_session(mlp_model, settings)
    feeds = {"x": __import__("numpy").zeros((1, 64), dtype="float32")}
    progress = LoopProgress()
    calls: list[bool] = []

    def on_window(start: bool) -> None:
        calls.append(start)
        progress.abort = start  # the host "goes away" as soon as the window opens

    with pytest.raises(AgentError) as info:
        timed_loop(session, feeds, settings, progress, on_window)
    assert info.value.code is ErrorCode.ABORTED
    assert calls == [True, False]  # the sampler was stopped, not left polling
