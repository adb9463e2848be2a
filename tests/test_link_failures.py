"""A board that drops off mid-run: typed errors within the timeout, and the next call works.
And a serial line that damages and loses bytes: uploads still verify, benchmarks complete."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from hwnas_bench import ConnectionLostError, Device, DeviceTimeoutError
from hwnas_bench.targets import serial_target
from hwnas_bench.testing import (
    FaultyRelay,
    PtyPair,
    SSHServer,
    start_pty_pair,
    start_serial_agent,
)

from .conftest import missing_part

LONG = {"min_iterations": 10, "min_time_s": 60.0, "max_time_s": 60.0, "warmup_min_s": 0.0}

#: How soon after a cut the error must come. Nominally at once (a closed pipe or socket);
#: the margin is for a loaded 2-core CI runner (pytest -n 8), and is still far below the
#: 30-60 s call timeouts and the 60 s benchmark, so a hang cannot pass.
PROMPT_S = 15.0
FAST = {"min_iterations": 10, "min_time_s": 0.1, "warmup_min_s": 0.0}


def bench_and_cut(device: Device, model: Path, cut: Callable[[], Any]) -> tuple[Exception, float]:
    """Start a long benchmark; once the agent reports timed iterations, ``cut()`` the link.

    Waits on the progress callback (an Event), never on a fixed sleep.
    """
    timing = threading.Event()

    def on_progress(progress: Mapping[str, Any]) -> None:
        if progress.get("stage") == "timed":
            timing.set()

    result: dict[str, Any] = {}

    def run() -> None:
        try:
            device.bench(model, on_progress=on_progress, **LONG)
        except Exception as exc:
            result["error"] = exc
            result["at"] = time.monotonic()

    worker = threading.Thread(target=run)
    worker.start()
    assert timing.wait(30), "the benchmark never reached its timed loop"
    cut_at = time.monotonic()
    cut()
    worker.join(60)
    assert not worker.is_alive(), "bench() did not return after the link was cut"
    return result["error"], result["at"] - cut_at


def test_killing_the_local_agent_mid_benchmark(local_device: Device, conv_model: Path) -> None:
    local_device.open()
    pid = local_device.transport.pid  # type: ignore[attr-defined]
    error, after = bench_and_cut(local_device, conv_model, lambda: os.kill(pid, signal.SIGKILL))
    assert isinstance(error, ConnectionLostError)
    assert error.target == "local"
    assert error.step == "read"
    assert "exit code -9" in str(error)
    assert after < PROMPT_S
    assert local_device.bench(conv_model, **FAST).latency.n >= 10  # a fresh agent
    assert local_device.transport.pid != pid  # type: ignore[attr-defined]


def test_cutting_the_ssh_connection_mid_benchmark(
    sshd: SSHServer, ssh_device: Device, conv_model: Path
) -> None:
    error, after = bench_and_cut(ssh_device, conv_model, sshd.kill_sessions)
    assert isinstance(error, ConnectionLostError)
    assert error.target == "ssh-board"
    assert after < PROMPT_S
    assert ssh_device.bench(conv_model, **FAST).latency.n >= 10


def test_killing_the_agent_on_the_ssh_board(ssh_device: Device, conv_model: Path) -> None:
    pid = ssh_device.open()["pid"]  # the "board" is this machine: its agent's pid is here
    error, after = bench_and_cut(ssh_device, conv_model, lambda: os.kill(pid, signal.SIGKILL))
    assert isinstance(error, ConnectionLostError)
    assert after < PROMPT_S
    assert ssh_device.bench(conv_model, **FAST).latency.n >= 10


def test_silent_serial_agent_times_out_then_recovers(
    pty_pair: PtyPair, tmp_path: Path, conv_model: Path
) -> None:
    agent = start_serial_agent(pty_pair.a, tmp_path / "cache")
    device = serial_target(f"{pty_pair.b}@4000000").device(timeout=30, idle_timeout=3.0)
    try:
        # a serial line does not close when the board dies: only the silence tells
        error, after = bench_and_cut(device, conv_model, agent.kill)
        assert isinstance(error, DeviceTimeoutError)
        assert "fell silent for 3.0 s" in str(error)
        assert after < 3.0 + PROMPT_S  # the idle timeout, not the 30 s call timeout
        agent.wait()
        agent = start_serial_agent(pty_pair.a, tmp_path / "cache")  # the board comes back
        assert device.bench(conv_model, **FAST).latency.n >= 10
    finally:
        device.close()
        agent.kill()
        agent.wait()


@pytest.fixture
def noisy_line(tmp_path: Path) -> Iterator[tuple[Path, Path, FaultyRelay]]:
    """agent ── pty ── relay (1 byte in 10,000 flipped, 1 in 10,000 dropped) ── pty ── host"""
    from hwnas_bench.testing import MissingPart

    try:
        agent_side, host_side = start_pty_pair(tmp_path, "agent"), start_pty_pair(tmp_path, "host")
    except MissingPart as exc:
        missing_part(exc)
    relay = FaultyRelay(agent_side.b, host_side.a, corrupt_rate=1e-4, drop_rate=1e-4, seed=7)
    yield agent_side.a, host_side.b, relay
    relay.stop()
    agent_side.stop()
    host_side.stop()


@pytest.mark.slow  # ~12 s of a deliberately lossy line
def test_upload_and_bench_through_a_noisy_line(
    noisy_line: tuple[Path, Path, FaultyRelay], big_model: Path, tmp_path: Path
) -> None:
    agent_port, host_port, relay = noisy_line
    cache = tmp_path / "noisy-cache"
    agent = start_serial_agent(agent_port, cache)
    device = serial_target(f"{host_port}@4000000").device(timeout=120)
    try:
        data = big_model.read_bytes()
        assert len(data) > 1_000_000
        device.put_model(big_model)
        stored = cache / f"{hashlib.sha256(data).hexdigest()}.onnx"
        assert stored.read_bytes() == data  # verified on arrival, byte for byte
        assert sorted(p.name for p in cache.glob("*.onnx")) == [stored.name]  # nothing else kept
        m = device.bench(big_model, min_iterations=50, min_time_s=0.5)
        assert m.latency.n == len(m.samples_ms) >= 50
        stats = device.channel.stats
        assert relay.stats.corrupted > 20
        assert relay.stats.dropped > 20
        assert stats.resends > 0
    finally:
        device.close()
        agent.kill()
        agent.wait()
