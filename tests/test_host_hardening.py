"""The host side under hostile or broken surroundings: a shared lock directory with planted
links, a tampered agent on the board, a board python without numpy, a port that does not
speak SSH, a key the board refuses, empty and invalid models, one Device used from two
threads, and many models measured in a row."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import hwnas_bench
from device_agent.protocol import BENCH_REPLY_SECTIONS, BenchSettings, Op
from hwnas_bench import AgentError, ConnectError, Device, HwnasError, Measurement, load_config
from hwnas_bench.farm import BoardBusyError, Farm
from hwnas_bench.locks import BoardLock
from hwnas_bench.targets import TargetSpec
from hwnas_bench.testing import SSHServer
from hwnas_bench.transports.local import LocalTransport

FAST = {"min_iterations": 5, "min_time_s": 0.0, "warmup_min_s": 0.0}


# -- a shared lock directory --------------------------------------------------------------


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A private file of ours that someone else would like to read or destroy."""
    path = tmp_path / "private" / "id_ed25519"
    path.parent.mkdir()
    path.write_text("SECRET KEY\n")
    path.chmod(0o600)
    return path


def untouched(victim: Path) -> None:
    assert victim.read_text() == "SECRET KEY\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600


def local_farm(tmp_path: Path, lock_dir: Path) -> Farm:
    config = tmp_path / "hwnas.toml"
    config.write_text('[boards.a]\ntransport = "local"\n')
    return Farm(load_config(config), lock_dir=lock_dir)


def test_planted_symlink_as_lock_file_is_refused(tmp_path: Path, victim: Path) -> None:
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    (lock_dir / "a.lock").symlink_to(victim)
    lock = BoardLock(lock_dir, "a")
    from hwnas_bench.locks import UnsafeLockFileError

    with pytest.raises(UnsafeLockFileError, match=r"a\.lock.*symbolic link"):
        lock.try_acquire("test")
    assert not lock.held
    assert lock.holder() is None  # reading through the link is refused too
    untouched(victim)


def test_hard_link_as_lock_file_is_refused(tmp_path: Path, victim: Path) -> None:
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    os.link(victim, lock_dir / "a.lock")
    from hwnas_bench.locks import UnsafeLockFileError

    with pytest.raises(UnsafeLockFileError, match="hard link"):
        BoardLock(lock_dir, "a").try_acquire("test")
    untouched(victim)


def test_a_fifo_as_lock_file_is_refused_without_blocking(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    os.mkfifo(lock_dir / "a.lock")
    from hwnas_bench.locks import UnsafeLockFileError

    with pytest.raises(UnsafeLockFileError, match="not a regular file"):
        BoardLock(lock_dir, "a").try_acquire("test")


def test_planted_symlinks_as_health_file_and_lease_log(tmp_path: Path, victim: Path) -> None:
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    (lock_dir / "a.health").symlink_to(victim)
    (lock_dir / "leases.jsonl").symlink_to(victim)
    with local_farm(tmp_path, lock_dir) as farm:
        lease = farm.lease("a", timeout=30)
        with pytest.warns(UserWarning, match=r"leases\.jsonl.*symbolic link"):
            lease.release()
    untouched(victim)
    health = lock_dir / "a.health"  # written anew beside the link, never through it
    assert not health.is_symlink()
    assert '"consecutive_failures": 0' in health.read_text()


HOSTILE_NOTES = {
    "nested": "[" * 100_000,
    "nested-under-the-size-cap": "[" * 60_000,
    "nested-object": '{"a":' * 100_000,
    "wrong-types": json.dumps(
        {"consecutive_failures": "x", "last_error": 7, "last_ok": [], "retry_after": "soon"}
    ),
    "forever": json.dumps(
        {"consecutive_failures": 3, "last_error": "planted", "retry_after": 1e308}
    ),
    "infinite": '{"consecutive_failures": 3, "retry_after": Infinity, "last_ok": NaN}',
    "bool-and-negative": '{"consecutive_failures": true, "retry_after": -5, "last_ok": -1}',
    "not-an-object": "[1, 2, 3]",
}


@pytest.mark.parametrize("note", list(HOSTILE_NOTES), ids=list(HOSTILE_NOTES))
def test_hostile_health_note_is_treated_as_no_note(tmp_path: Path, note: str) -> None:
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    (lock_dir / "a.health").write_text(HOSTILE_NOTES[note])
    with local_farm(tmp_path, lock_dir) as farm:
        with farm.lease("a", timeout=30) as lease:
            assert lease.facts["agent_version"]
        health = farm.health("a")
    assert health.consecutive_failures == 0
    assert health.retry_after is None


def test_health_note_fields_are_validated_one_by_one(tmp_path: Path) -> None:
    from hwnas_bench.health import MAX_BACKOFF_S, Health

    path = tmp_path / "a.health"
    now = time.time()
    path.write_text(
        json.dumps(
            {
                "consecutive_failures": 4,
                "last_error": "unreachable (refused)\nsecond line " + "x" * 10_000,
                "last_ok": "yesterday",
                "retry_after": now + 100 * MAX_BACKOFF_S,
            }
        )
    )
    health = Health.load(path)
    assert health.consecutive_failures == 4  # a good field is kept beside bad ones
    assert health.last_ok is None
    assert health.retry_after is None  # beyond any back-off we write: not ours
    assert health.last_error is not None
    assert "\n" not in health.last_error
    assert len(health.last_error) <= 500
    path.write_text(json.dumps({"consecutive_failures": 4, "retry_after": now + 60}))
    assert Health.load(path).describe_back_off(now).endswith("next check in 60 s")


def test_huge_note_in_the_lock_dir_is_not_read_whole(tmp_path: Path) -> None:
    from hwnas_bench.locks import MAX_NOTE_BYTES, read_in_lock_dir

    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    huge = lock_dir / "a.health"
    with huge.open("wb") as fh:
        fh.truncate(256 * 1024 * 1024)  # sparse: costs no disk
    assert read_in_lock_dir(huge) is None  # over the cap: not a note of ours
    small = lock_dir / "b.health"
    small.write_text("x" * MAX_NOTE_BYTES)
    assert read_in_lock_dir(small) == "x" * MAX_NOTE_BYTES
    with local_farm(tmp_path, lock_dir) as farm, farm.lease("a", timeout=30) as lease:
        assert lease.facts["agent_version"]


FLOCK_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("HELD", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def lock_held_by_another_process(lock_file: Path) -> Iterator[None]:
    """Another process holds ``lock_file``'s flock (as a running lease does) until exit."""
    holder = subprocess.Popen(
        [sys.executable, "-c", FLOCK_HOLDER, str(lock_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "HELD\n"  # waits on the pipe for the flock
        yield
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize(
    "note",
    ["[" * 4096, '{"pid": "x", "host": 1, "user": [], "purpose": {}, "since": 2}', "\x00\xff"],
    ids=["nested", "wrong-types", "binary"],
)
def test_held_lock_with_a_hostile_note_is_busy_in_one_line(tmp_path: Path, note: str) -> None:
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    lock_file = lock_dir / "a.lock"
    lock_file.write_text(note)
    with lock_held_by_another_process(lock_file), local_farm(tmp_path, lock_dir) as farm:
        messages: list[str] = []
        with pytest.raises(BoardBusyError) as info:
            farm.lease("a", timeout=0.5, on_wait=messages.append)
        assert info.value.holders["a"] is not None
    message = str(info.value)
    assert "\n" not in message
    assert "a is held by an unknown process (its note in a.lock cannot be read)" in message
    assert messages == [
        "waiting for a: a held by an unknown process (its note in a.lock cannot be read)"
    ]
    # the holder is gone: the board is free
    with local_farm(tmp_path, lock_dir) as farm, farm.lease("a", timeout=30) as lease:
        assert lease.facts["agent_version"]


def test_holder_note_with_a_newline_stays_one_line(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    lock_file = lock_dir / "a.lock"
    note = {"pid": 42, "host": "h", "user": "u", "purpose": "x\nTraceback", "since": "t"}
    lock_file.write_text(json.dumps(note))
    with lock_held_by_another_process(lock_file):
        found = BoardLock(lock_dir, "a").holder()
    assert found is not None
    assert found.pid == 42
    assert "\n" not in found.describe()


# -- deploy ---------------------------------------------------------------------------------


def remote_agent(device: Device) -> Path:
    from hwnas_bench.deploy import build_agent_zipapp

    bundle = build_agent_zipapp(device.transport.plugin_modules)  # type: ignore[attr-defined]
    return Path.home() / bundle.remote_path


def test_tampered_agent_of_the_same_size_is_uploaded_again(sshd: SSHServer) -> None:
    first = sshd.target().device(timeout=60)
    first.open()
    first.close()
    remote = remote_agent(first)
    good = remote.read_bytes()
    # same size, other bytes: a script that python runs in place of the zipapp
    remote.write_bytes(b"import sys; sys.exit(3)\n".ljust(len(good), b"#"))
    second = sshd.target().device(timeout=60)
    try:
        assert second.open()["agent_version"]
        assert second.transport.deployed == str(remote.relative_to(Path.home()))  # type: ignore[attr-defined]
    finally:
        second.close()
    assert remote.read_bytes() == good


@pytest.fixture(scope="module")
def python_without_numpy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import numpy"], capture_output=True)
    assert probe.returncode != 0, "the bare venv must lack numpy"
    return python


def test_agent_deploy_checks_the_board_python_even_when_present(
    sshd: SSHServer, python_without_numpy: Path
) -> None:
    from hwnas_bench import DeployError

    good = sshd.target().device(timeout=60)
    good.open()  # the agent is on the board now
    good.close()
    transport = sshd.target(python=str(python_without_numpy)).make_transport()
    transport.connect(30)  # type: ignore[attr-defined]
    try:
        with pytest.raises(DeployError, match="lacks: numpy") as info:
            transport.ensure_agent()  # type: ignore[attr-defined]
    finally:
        transport.close()
    assert "onnxruntime" in str(info.value).splitlines()[0]


def test_agent_that_cannot_start_says_why_in_one_line(
    sshd: SSHServer, python_without_numpy: Path
) -> None:
    device = sshd.target(python=str(python_without_numpy)).device(timeout=30)
    with pytest.raises(HwnasError) as info:
        device.open()
    first = str(info.value).splitlines()[0]
    assert "numpy" in first, str(info.value)


def test_missing_board_python_says_so_in_one_line(sshd: SSHServer) -> None:
    device = sshd.target(python="/nonexistent/bin/python3").device(timeout=30)
    with pytest.raises(HwnasError) as info:
        device.open()
    first = str(info.value).splitlines()[0]
    assert "/nonexistent/bin/python3" in first
    assert "not found" in first or "No such file" in first, str(info.value)


# -- SSH connection errors ------------------------------------------------------------------


@pytest.fixture(params=[b"HTTP/1.1 400 Bad Request\r\n\r\n", b""], ids=["garbage", "silent"])
def not_ssh(request: pytest.FixtureRequest) -> Iterator[int]:
    """A TCP port that answers with something other than an SSH banner (or nothing)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            if request.param:
                conn.sendall(request.param)
                conn.close()
            else:
                held.append(conn)  # say nothing, keep the line open

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()
    for conn in held:
        conn.close()


def test_a_port_that_is_not_ssh_gives_one_clear_line(
    not_ssh: int, capfd: pytest.CaptureFixture[str]
) -> None:
    spec = TargetSpec("no-ssh", "ssh", {"host": "127.0.0.1", "port": not_ssh})
    with pytest.raises(ConnectError) as info:
        spec.device(timeout=2).open()
    message = str(info.value)
    assert f"127.0.0.1:{not_ssh} does not speak SSH (no SSH banner)" in message
    assert len(message.splitlines()) == 1
    assert "Traceback" not in capfd.readouterr().err  # paramiko logged nothing to stderr


def test_cli_ssh_to_a_port_that_is_not_ssh(not_ssh: int, mlp_model: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hwnas_bench.cli.main",
            "bench",
            str(mlp_model),
            "--ssh",
            f"someone@127.0.0.1:{not_ssh}",
            "--timeout",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "does not speak SSH" in lines[0]
    assert "Traceback" not in proc.stderr


def test_refused_key_gets_a_hint(sshd: SSHServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    no_config = tmp_path / "empty_ssh_config"  # none of the user's settings
    no_config.write_text("")
    spec = TargetSpec(
        "refused",
        "ssh",
        {
            "host": "127.0.0.1",
            "port": sshd.port,
            "user": sshd.user,
            "identity_file": str(stranger),
            "known_hosts": str(sshd.known_hosts),
            "ssh_config": str(no_config),
        },
    )
    with pytest.raises(ConnectError) as info:
        spec.device(timeout=20).open()
    message = str(info.value)
    assert "authentication failed" in message
    assert f"user '{sshd.user}'" in message
    assert str(stranger) in message
    assert "ssh-copy-id" in message
    assert "identity_file" in message


# -- models ---------------------------------------------------------------------------------


def test_empty_model_file_is_refused_before_any_upload(tmp_path: Path) -> None:
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    device = Device(LocalTransport(cache_dir=tmp_path / "cache"), timeout=30)
    with pytest.raises(HwnasError, match=r"model file .*empty\.onnx is empty"):
        device.bench(empty)
    with pytest.raises(HwnasError, match="is empty"):
        device.put_model(empty)
    assert not device.transport.is_open  # nothing was started, nothing uploaded


def test_invalid_model_error_names_the_file(local_device: Device, tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not an onnx model")
    with pytest.raises(AgentError) as info:
        local_device.bench(bad, **FAST)
    assert info.value.code == "invalid_model"
    assert str(bad) in str(info.value)
    import hashlib

    assert hashlib.sha256(bad.read_bytes()).hexdigest()[:12] not in str(info.value)


def test_bench_reply_with_unknown_keys_in_every_section(
    local_device: Device, mlp_model: Path
) -> None:
    from hwnas_bench.measurement import from_bench_reply

    info = local_device.put_model(mlp_model)
    settings = BenchSettings(**FAST)  # type: ignore[arg-type]
    reply = local_device.channel.request(
        {"op": Op.BENCH.value, "model": info.sha256, **settings.to_wire()}, timeout=60
    )
    header = dict(reply.header)
    for section in BENCH_REPLY_SECTIONS:
        header[section] = {**header[section], "added_by_a_newer_agent": 1}
    header["notes"] = ["threads capped at 2 (2 cores free)"]
    header["a_new_top_level_value"] = {"x": 1}
    m = from_bench_reply("local", {}, info, header, [1.0] * 5)
    assert m.latency.n == reply.header["latency"]["n"]
    assert m.notes == ["threads capped at 2 (2 cores free)"]
    assert Measurement.from_json(m.to_json()) == m


# -- the Python API the search uses ---------------------------------------------------------


def test_public_api_for_the_search() -> None:
    from device_agent.protocol import ErrorCode

    for name in (
        "Farm",
        "Lease",
        "BoardBusyError",
        "BoardUnhealthyError",
        "NoHealthyBoardError",
        "UnknownTargetError",
        "UsageError",
        "ErrorCode",
        "BenchFailure",
    ):
        assert name in hwnas_bench.__all__
        assert getattr(hwnas_bench, name)
    assert hwnas_bench.ErrorCode is ErrorCode


def test_one_device_shared_by_two_threads(
    local_device: Device, mlp_model: Path, conv_model: Path
) -> None:
    results: dict[str, list[Measurement]] = {"mlp": [], "conv": []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(key: str, model: Path) -> None:
        start.wait()
        try:
            for _ in range(4):
                results[key].append(local_device.bench(model, **FAST))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=("mlp", mlp_model)),
        threading.Thread(target=worker, args=("conv", conv_model)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert [m.model.name for m in results["mlp"]] == ["mlp.onnx"] * 4
    assert [m.model.name for m in results["conv"]] == ["convnet.onnx"] * 4


def test_bench_many_keeps_going(local_device: Device, mlp_model: Path, conv_model: Path) -> None:
    """A bad model is recorded and the rest measured; a link that breaks mid-model costs only
    that model: the next one reconnects."""
    import signal

    from hwnas_bench import BenchFailure, DeviceTimeoutError

    seen: list[int] = []
    timeout = local_device.timeout

    def on_result(index: int, result: object) -> None:
        seen.append(index)
        if index == 1:  # the agent freezes (as a board that hangs) after the bad model
            os.kill(local_device.transport.pid, signal.SIGSTOP)  # type: ignore[attr-defined]
            local_device.timeout = 2.0
        elif index == 2:
            local_device.timeout = timeout

    results = local_device.bench_many(
        [mlp_model, b"not an onnx model", conv_model, mlp_model], on_result=on_result, **FAST
    )
    assert seen == [0, 1, 2, 3]
    assert isinstance(results[0], Measurement)
    assert isinstance(results[1], BenchFailure)
    assert results[1].code == "invalid_model"
    assert isinstance(results[1].error, AgentError)
    assert results[1].sha256
    assert isinstance(results[2], BenchFailure)  # lost with the frozen agent
    assert isinstance(results[2].error, DeviceTimeoutError)
    assert results[2].model == "convnet.onnx"
    assert isinstance(results[3], Measurement)  # a fresh agent
    assert results[3].model.name == "mlp.onnx"


# -- structure ------------------------------------------------------------------------------


def test_builtin_transports_do_not_import_the_plugin_module() -> None:
    source = Path(hwnas_bench.__file__).parent / "transports" / "builtin.py"
    imported = {
        node.module
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "plugins" not in imported
    assert "hwnas_bench.plugins" not in imported
