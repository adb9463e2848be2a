"""The same model measured through every transport, each a real part: a subprocess over
stdio, OpenSSH's sshd on 127.0.0.1, and a socat pty pair as the serial line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hwnas_bench import Device, Measurement
from hwnas_bench.targets import serial_target
from hwnas_bench.testing import PtyPair, SSHServer, start_serial_agent

FAST = {"min_iterations": 20, "min_time_s": 0.2, "warmup_min_s": 0.05}


@pytest.fixture(params=["local", "ssh", "serial"])
def device(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Device]:
    if request.param == "local":
        yield request.getfixturevalue("local_device")
    elif request.param == "ssh":
        yield request.getfixturevalue("ssh_device")
    else:
        pair: PtyPair = request.getfixturevalue("pty_pair")
        agent = start_serial_agent(pair.a, tmp_path / "serial-cache")
        dev = serial_target(f"{pair.b}@4000000").device(timeout=30)
        yield dev
        dev.close()
        agent.kill()
        agent.wait()


def test_full_measurement_through_each_transport(device: Device, conv_model: Path) -> None:
    m = device.bench(conv_model, threads=1, **FAST)
    lat = m.latency
    assert m.target == device.name
    assert lat.n == len(m.samples_ms) >= 20
    assert 0 < lat.min_ms <= lat.median_ms <= lat.p90_ms <= lat.p95_ms <= lat.p99_ms <= lat.max_ms
    assert lat.mean_ms == pytest.approx(sum(m.samples_ms) / lat.n)
    assert m.throughput_ips
    assert m.throughput_ips > 0
    assert m.model.name == "convnet.onnx"
    assert m.model.bytes == conv_model.stat().st_size
    assert m.settings["threads"] == 1
    assert m.settings["providers"] == ["CPUExecutionProvider"]
    described = [{k: i[k] for k in ("name", "dtype", "shape")} for i in m.inputs]
    assert described == [{"name": "x", "dtype": "float32", "shape": [1, 3, 64, 64]}]
    assert m.board["onnxruntime"]
    assert m.board["cores_logical"] >= 1
    assert m.memory.peak_rss_mb
    assert m.memory.peak_rss_mb > 10
    assert m.stopped_by == "min_iterations_and_time"
    # this machine has no power sensor: the numbers must be absent, with the reason
    if not m.board["power_meters"]:
        assert m.power.mean_w is None
        assert m.power.energy_mj is None
        assert m.power.reason
        assert "no power sensor" in m.power.reason
    assert Measurement.from_json(m.to_json()) == m
    assert json.loads(m.to_json())["schema"] == "hwnas.measurement/1"


def test_second_benchmark_reuses_cached_model_and_session(device: Device, mlp_model: Path) -> None:
    device.bench(mlp_model, **FAST)
    uploaded = device.channel.stats.wire_tx
    m = device.bench(mlp_model, **FAST)
    assert device.channel.stats.wire_tx - uploaded < 2000  # no second upload
    assert m.memory.session_reused is True


def test_profile_names_the_nodes(device: Device, conv_model: Path) -> None:
    profile = device.profile(conv_model, iterations=5, warmup_runs=0, warmup_min_s=0)
    ops = {row["op_type"] for row in profile.summary["nodes"]}
    assert {"Conv", "MaxPool", "Gemm"} <= ops
    assert profile.summary["runs"] == 5
    assert abs(sum(row["share"] for row in profile.summary["nodes"]) - 1) < 1e-6


def test_ssh_deploys_the_agent_once(sshd: SSHServer, mlp_model: Path, tmp_path: Path) -> None:
    import shutil

    from hwnas_bench.deploy import REMOTE_AGENT_DIR

    shutil.rmtree(Path.home() / REMOTE_AGENT_DIR, ignore_errors=True)
    first = sshd.target().device()
    first.open()
    assert first.transport.deployed  # type: ignore[attr-defined]
    first.close()
    second = sshd.target().device()
    second.open()
    assert second.transport.deployed is None  # type: ignore[attr-defined]
    second.close()


def test_ssh_refuses_an_unknown_host_key_unless_trusted(sshd: SSHServer, tmp_path: Path) -> None:
    from hwnas_bench import ConnectError
    from hwnas_bench.targets import TargetSpec

    empty = tmp_path / "known_hosts"
    options = {**sshd.target().options, "known_hosts": str(empty)}
    with pytest.raises(ConnectError, match="unknown host key"):
        TargetSpec("strange-board", "ssh", options).device().open()
    trusting = TargetSpec("strange-board", "ssh", {**options, "trust_unknown_host": True}).device()
    trusting.open()
    trusting.close()
    assert "ssh-ed25519" in empty.read_text()  # remembered
    TargetSpec("strange-board", "ssh", options).device().open()  # and now known


def test_serial_survives_boot_messages_on_the_line(
    pty_pair: PtyPair, serial_agent: subprocess.Popen[bytes], mlp_model: Path
) -> None:
    with open(pty_pair.b, "wb", buffering=0) as line:  # what a console prints while booting
        line.write(b"[    0.000000] Booting Linux on physical CPU 0x0\r\nraspberrypi login: ")
    device = serial_target(f"{pty_pair.b}@4000000").device()
    try:
        m = device.bench(mlp_model, **FAST)
        assert m.latency.n >= 20
    finally:
        device.close()


def test_tcp_agent_needs_its_token(tmp_path: Path, mlp_model: Path) -> None:
    import socket
    import sys

    from hwnas_bench import AgentError
    from hwnas_bench.testing.parts import wait_for_line

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device_agent",
            "--tcp",
            f"127.0.0.1:{port}",
            "--token",
            "s3cret",
            "--cache-dir",
            str(tmp_path),
        ],
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_line(proc, b"serving TCP", 30)
        bad = serial_target(f"socket://127.0.0.1:{port}").device(token="wrong")
        with pytest.raises(AgentError, match="unauthorized"):
            bad.open()
        bad.close()
        good = serial_target(f"socket://127.0.0.1:{port}").device(token="s3cret")
        assert good.bench(mlp_model, **FAST).latency.n >= 20
        good.close()
    finally:
        proc.kill()
        proc.wait()


def test_ssh_agent_supplies_the_key(sshd: SSHServer, tmp_path: Path, mlp_model: Path) -> None:
    """No IdentityFile anywhere: the key comes from a real ssh-agent, as on a laptop."""
    import os
    import shutil

    from hwnas_bench.targets import TargetSpec

    if not shutil.which("ssh-agent"):
        pytest.skip("ssh-agent not installed")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.PIPE)
    try:
        assert agent.stdout is not None
        agent.stdout.readline()  # it prints its environment once the socket is listening
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sshd.client_key)], env=env, check=True)
        config = tmp_path / "ssh_config"
        config.write_text(
            f"Host board\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        )
        spec = TargetSpec(
            "agent-key",
            "ssh",
            {
                "host": "board",
                "python": sys.executable,
                "ssh_config": str(config),
                "known_hosts": str(sshd.known_hosts),
            },
        )
        old = os.environ.get("SSH_AUTH_SOCK")
        os.environ["SSH_AUTH_SOCK"] = str(sock)
        try:
            device = spec.device()
            assert device.bench(mlp_model, **FAST).latency.n >= 20
            device.close()
        finally:
            if old is None:
                os.environ.pop("SSH_AUTH_SOCK")
            else:
                os.environ["SSH_AUTH_SOCK"] = old
    finally:
        agent.kill()
        agent.wait()
