"""The agent against hostile or careless peers: frames built to crash the decoder, TCP
clients that never speak, speak slowly, guess tokens or compete for the board, and start-up
mistakes that must end in one readable line, not a traceback in a board's journal."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.protocol import MAGIC, Frame, FrameType
from device_agent.protocol.frames import PRELUDE

from .raw_agent import RawAgent, TcpAgent, error_code

REPO = Path(__file__).resolve().parent.parent


def raw_frame(seq: int, head: bytes) -> bytes:
    """A REQUEST built by hand with correct CRCs, carrying any header bytes at all."""
    prelude = PRELUDE.pack(MAGIC, 1, FrameType.REQUEST, 0, seq, len(head), 0)
    crc = struct.pack(">I", zlib.crc32(prelude))
    return prelude + crc + head + struct.pack(">I", zlib.crc32(head))


#: About 2 KB: a JSON header nested 1,000 levels deep.
NESTED = b'{"op":' + b"[" * 1000 + b"]" * 1000 + b"}"


def bench_header(sha: str, **settings: object) -> dict[str, object]:
    return {"op": "bench", "model": sha, "warmup_min_s": 0.0, **settings}


@pytest.fixture
def tcp_agent(tmp_path: Path) -> Iterator[TcpAgent]:
    agent = TcpAgent(tmp_path / "cache")
    yield agent
    agent.close()


# -- headers built to crash the decoder ------------------------------------------------------


def test_nested_header_over_stdio_gets_bad_frame_and_the_agent_serves_on(tmp_path: Path) -> None:
    agent = RawAgent(tmp_path / "cache")
    try:
        agent.send_bytes(raw_frame(300, NESTED))
        reply = agent.receive()
        assert isinstance(reply, Frame)
        assert reply.seq == 300
        assert error_code(reply) == "bad_frame"
        assert "nest" in reply.header["error"]["message"]
        facts = agent.hello_ok()
        assert facts["counters"]["damaged_frames"] == 1
    finally:
        agent.close()


def test_nested_header_over_tcp_before_auth_does_not_stop_the_server(
    tcp_agent: TcpAgent,
) -> None:
    with tcp_agent.connect() as client:
        client.send_bytes(raw_frame(301, NESTED))
        reply = client.receive()
        assert isinstance(reply, Frame)
        assert reply.seq == 301
        assert error_code(reply) == "bad_frame"
        client.hello_ok(token=tcp_agent.token)  # the same connection serves on
    with tcp_agent.authed() as other:  # and the server still takes new clients
        other.hello_ok()
    assert tcp_agent.proc.poll() is None


def test_header_of_huge_numbers_is_refused_quickly(tcp_agent: TcpAgent) -> None:
    """After hello (before it, a 200 KB header is too large: test_agent_preauth.py)."""
    head = b'{"op":"hello","n":' + b"7" * 200_000 + b"}"
    with tcp_agent.authed() as client:
        client.send_bytes(raw_frame(302, head))
        reply = client.receive()
        assert isinstance(reply, Frame)
        assert error_code(reply) == "bad_frame"
        client.hello_ok()


# -- one client must not hold the others -----------------------------------------------------


def test_silent_and_dripping_clients_do_not_block_others(tcp_agent: TcpAgent) -> None:
    with tcp_agent.connect() as silent, tcp_agent.connect() as dripping:
        dripping.send_bytes(raw_frame(1, b'{"op":"hello"}')[:10])  # a frame that stalls
        with tcp_agent.connect() as third:
            start = time.monotonic()
            third.hello_ok(token=tcp_agent.token)
            assert time.monotonic() - start < 10
        assert silent.sock.fileno() >= 0


def test_unauthenticated_client_is_closed_at_the_auth_deadline(tmp_path: Path) -> None:
    agent = TcpAgent(tmp_path / "cache", "--auth-timeout-s", "1")
    try:
        start = time.monotonic()  # before the agent's clock starts: elapsed >= its deadline
        with agent.connect() as silent, agent.connect() as dripping:
            frame = raw_frame(7, b'{"op":"hello","token":"x"}')
            # one byte at each of dripping's reads that finds nothing: a slow-loris client
            sent = 0
            while sent < len(frame):
                ready, _, _ = select_read(dripping.sock, 0.2)
                if ready:
                    break  # the agent closed it (EOF is readable)
                try:
                    dripping.send_bytes(frame[sent : sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    break  # closed between the select and the send
                sent += 1
            assert dripping.wait_closed(10) == []
            assert silent.wait_closed(10) == []
            assert time.monotonic() - start >= 0.9
            assert sent < len(frame)  # closed before the frame could ever be completed
        with agent.authed() as client:  # the server goes on
            client.hello_ok()
    finally:
        agent.close()


def select_read(sock: socket.socket, timeout: float) -> tuple[list, list, list]:
    import select

    return select.select([sock], [], [], timeout)


def test_idle_authenticated_client_is_closed(tmp_path: Path) -> None:
    agent = TcpAgent(tmp_path / "cache", "--idle-timeout-s", "1")
    try:
        start = time.monotonic()  # before the last frame: elapsed >= the idle deadline
        with agent.authed() as client:
            assert client.wait_closed(10) == []
            assert time.monotonic() - start >= 0.9
    finally:
        agent.close()


def test_connections_beyond_the_limit_are_refused_with_busy(tmp_path: Path) -> None:
    """When every slot is authenticated; a waiting one makes room (test_agent_preauth.py)."""
    agent = TcpAgent(tmp_path / "cache", "--max-connections", "2")
    try:
        with agent.authed(), agent.authed(), agent.connect() as third:
            seq = third.send(FrameType.REQUEST, {"op": "hello", "token": agent.token})
            got = third.wait_closed(10)
            assert len(got) == 1
            assert isinstance(got[0], Frame)
            assert got[0].seq == seq
            assert error_code(got[0]) == "busy"
            assert "2 connections" in got[0].header["error"]["message"]
        # the two have gone: there is room again, once the agent has seen them go
        assert hello_once_there_is_room(agent).header["ok"] is True
    finally:
        agent.close()


def hello_once_there_is_room(agent: TcpAgent) -> Frame:
    """hello on a new connection, again while the answer is busy (each answer is waited on)."""
    for _ in range(100):
        with agent.connect() as client:
            try:
                reply = client.request({"op": "hello", "token": agent.token})
            except EOFError:  # closed unanswered: refused while others were being refused
                continue
            if reply.header["ok"] or error_code(reply) != "busy":
                return reply
    raise AssertionError("no room within 100 connections")


def test_bench_while_another_client_benchmarks_is_busy_at_once(
    tcp_agent: TcpAgent, mlp_model: Path
) -> None:
    data = mlp_model.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    with tcp_agent.authed() as first, tcp_agent.authed() as second:
        assert first.upload(data).header.get("done") is True
        seq = first.send(FrameType.REQUEST, bench_header(sha, min_time_s=4.0, min_iterations=5))
        beat = first.receive_any()  # the first PROGRESS: first holds the board now
        assert isinstance(beat, Frame)
        assert (beat.type, beat.seq) == (FrameType.PROGRESS, seq)
        start = time.monotonic()
        assert second.hello_ok()["agent_version"]  # cheap requests are still answered
        assert error_code(second.request(bench_header(sha, min_time_s=0.0))) == "busy"
        assert error_code(second.request({"op": "profile", "model": sha})) == "busy"
        assert time.monotonic() - start < 3.0  # answered, not queued behind a 4 s bench
        reply = first.receive(timeout=60)
        assert isinstance(reply, Frame)
        assert reply.seq == seq
        assert reply.header["ok"] is True
        # the board is free again
        ok = second.request(bench_header(sha, min_time_s=0.0, min_iterations=3))
        assert ok.header["ok"] is True


def test_uploads_on_two_connections_do_not_mix(
    tcp_agent: TcpAgent, mlp_model: Path, conv_model: Path
) -> None:
    a_data, b_data = mlp_model.read_bytes(), conv_model.read_bytes()
    a_sha = hashlib.sha256(a_data).hexdigest()
    with tcp_agent.authed() as a, tcp_agent.authed() as b:
        a.request({"op": "put_model", "sha256": a_sha, "size": len(a_data)})
        a.send(FrameType.CHUNK, {"offset": 0}, a_data[:1000])
        assert a.receive().header == {"next": 1000, "done": False}  # type: ignore[union-attr]
        # b's requests and b's own upload leave a's upload alone
        b.hello_ok()
        assert b.upload(b_data).header.get("done") is True
        a.send(FrameType.CHUNK, {"offset": 1000}, a_data[1000:])
        done = a.receive()
        assert isinstance(done, Frame)
        assert done.header.get("done") is True, done.header
        assert a.request(bench_header(a_sha, min_time_s=0.0, min_iterations=3)).header["ok"]


def test_shutdown_from_one_client_stops_the_server_with_others_connected(
    tcp_agent: TcpAgent,
) -> None:
    with tcp_agent.connect() as idle, tcp_agent.authed() as boss:
        assert boss.request({"op": "shutdown"}).header["bye"] is True
        assert tcp_agent.proc.wait(timeout=20) == 0
        assert idle.wait_closed(10) == []


# -- token guessing --------------------------------------------------------------------------


def test_wrong_tokens_close_the_connection_and_cost_growing_time(tmp_path: Path) -> None:
    agent = TcpAgent(tmp_path / "cache", "--auth-fail-delay-s", "0.2")
    try:
        with agent.connect() as guesser:
            start = time.monotonic()
            for n in range(10):  # pipelined, as fast as the socket takes them
                guesser.send(FrameType.REQUEST, {"op": "hello", "token": f"guess{n}"})
            # while the guesser is held back, another client is answered
            with agent.authed() as honest:
                honest.hello_ok()
                honest_done = time.monotonic()
            got = guesser.wait_closed(30)
            took = time.monotonic() - start
        assert [error_code(f) for f in got] == ["unauthorized"] * 3  # type: ignore[arg-type]
        assert took >= 0.9 * (0.2 + 0.4 + 0.8)  # the delay doubles per failure
        assert honest_done - start < took  # the honest client did not wait for the guesser
        with agent.connect() as again:  # the delay is per address: it goes on growing
            start = time.monotonic()
            reply = again.request({"op": "hello", "token": "guess10"})
            assert error_code(reply) == "unauthorized"
            assert time.monotonic() - start >= 0.9 * 1.6
    finally:
        agent.close()


def test_unencodable_and_non_string_tokens_are_wrong_tokens(tmp_path: Path) -> None:
    """A lone surrogate is legal JSON but not UTF-8: it must cost a failure like any guess."""
    agent = TcpAgent(tmp_path / "cache", "--auth-fail-delay-s", "0.02")
    try:
        with agent.connect() as guesser:
            start = time.monotonic()
            for _ in range(5):
                guesser.send(FrameType.REQUEST, {"op": "hello", "token": "\ud800"})
            got = guesser.wait_closed(30)
            took = time.monotonic() - start
        assert [error_code(f) for f in got] == ["unauthorized"] * 3  # type: ignore[arg-type]
        assert took >= 0.9 * (0.02 + 0.04 + 0.08)  # delayed, counted, closed
        with agent.connect() as other:
            for token in (5, [1], None):  # not strings: wrong tokens too
                reply = other.request({"op": "hello", "token": token})
                assert error_code(reply) == "unauthorized", token
            assert other.wait_closed(30) == []  # three failures close it
        with agent.authed() as client:
            client.hello_ok()
    finally:
        agent.close()
    assert "Traceback" not in agent.stderr()
    assert "internal error" not in agent.stderr()


def test_pack_declaring_a_huge_shape_is_refused_before_allocating(tmp_path: Path) -> None:
    """252 bytes that claim 6 GiB: the .npy header is checked against the cap before np.load."""
    import io
    import zipfile

    import numpy as np

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (1, 3, 8192, 65536)}
    )
    pack_buf = io.BytesIO()
    with zipfile.ZipFile(pack_buf, "w") as archive:
        archive.writestr("x.npy", header.getvalue())
    pack = pack_buf.getvalue()
    assert len(pack) < 400
    sha = hashlib.sha256(pack).hexdigest()
    agent = RawAgent(tmp_path / "cache", "--max-input-mb", "1")
    try:
        agent.hello_ok()
        before = vm_peak_kib(agent.proc.pid)
        reply = agent.request({"op": "put_inputs", "sha256": sha, "size": len(pack)})
        assert reply.header["ok"] is True, reply.header
        seq = agent.send(FrameType.CHUNK, {"offset": 0}, pack)
        done = agent.receive()
        assert isinstance(done, Frame)
        assert done.seq == seq
        assert error_code(done) == "input_too_large"
        message = done.header["error"]["message"]
        assert "'x'" in message
        assert "[1, 3, 8192, 65536]" in message
        grown = vm_peak_kib(agent.proc.pid) - before
        assert grown < 512 * 1024, f"VmPeak grew by {grown} KiB"
        agent.hello_ok()  # and it serves on
    finally:
        agent.close()


def vm_peak_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    (line,) = [x for x in status.splitlines() if x.startswith("VmPeak:")]
    return int(line.split()[1])


def test_one_address_cannot_hold_every_slot_before_authenticating(tmp_path: Path) -> None:
    """8 silent sockets from one address used to hold every slot for the auth deadline."""
    agent = TcpAgent(tmp_path / "cache", "--auth-timeout-s", "60")
    silent = [agent.connect() for _ in range(8)]
    try:
        # only 4 may wait for hello from one address: the others are refused at once
        closed = wait_for_eofs([c.sock for c in silent], want=4, timeout=20)
        assert len(closed) == 4
        with agent.connect(source="127.0.0.2") as honest:  # another address gets in
            assert honest.hello_ok(token=agent.token)["agent_version"]
        # an authenticated connection no longer counts against its address
        open_ones = [c for c in silent if c.sock not in closed]
        for client in open_ones:
            client.hello_ok(token=agent.token)
        with agent.connect() as fifth:
            assert fifth.hello_ok(token=agent.token)["agent_version"]
    finally:
        for client in silent:
            client.close()
        agent.close()


def wait_for_eofs(socks: list[socket.socket], want: int, timeout: float) -> list[socket.socket]:
    """The sockets the agent closed (EOF), once ``want`` of them are closed or at ``timeout``."""
    import select

    closed: list[socket.socket] = []
    deadline = time.monotonic() + timeout
    while len(closed) < want and time.monotonic() < deadline:
        waiting = [s for s in socks if s not in closed]
        ready, _, _ = select.select(waiting, [], [], max(deadline - time.monotonic(), 0))
        for sock in ready:
            try:
                data = sock.recv(1 << 16)  # a "busy" answer, then EOF
            except ConnectionResetError:
                data = b""
            if not data:
                closed.append(sock)
    return closed


# -- start-up errors -------------------------------------------------------------------------


def run_agent(
    *args: str, python: tuple[str, ...] = (sys.executable,)
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [*python, "-m", "device_agent", *args],
        capture_output=True,
        timeout=60,
        env=env,
        cwd=str(REPO),
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.decode().strip().splitlines()
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    assert len(lines) == 1, lines
    assert lines[0].startswith("hwnas-agent: error: "), lines
    return lines[0]


def test_missing_serial_port_is_one_line(tmp_path: Path) -> None:
    proc = run_agent("--serial", str(tmp_path / "nonexistent"), "--cache-dir", str(tmp_path))
    assert proc.returncode == 1
    assert "nonexistent" in one_error_line(proc)


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1:port", "127.0.0.1:99999", ":"])
def test_bad_tcp_address_is_an_argument_error(address: str) -> None:
    proc = run_agent("--tcp", address, "--token", "x")
    assert proc.returncode == 2
    assert "HOST:PORT" in one_error_line(proc)


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_agent("--tcp", f"127.0.0.1:{port}", "--token", "x", "--cache-dir", str(tmp_path))
    assert proc.returncode == 1
    assert str(port) in one_error_line(proc)


def test_unknown_option_is_one_line() -> None:
    proc = run_agent("--stdio", "--frobnicate")
    assert proc.returncode == 2
    assert "--frobnicate" in one_error_line(proc)


BARE = (sys.executable, "-S")  # no site-packages: the standard library only


def test_bare_python_has_no_numpy() -> None:
    """The premise of the tests below."""
    probe = subprocess.run([*BARE, "-c", "import numpy"], capture_output=True, env={})
    assert probe.returncode != 0


def test_help_and_argument_errors_need_only_the_standard_library() -> None:
    helped = run_agent("--help", python=BARE)
    assert helped.returncode == 0, helped.stderr.decode()
    assert b"--tcp" in helped.stdout
    version = run_agent("--version", python=BARE)
    assert version.returncode == 0, version.stderr.decode()
    assert b"device_agent" in version.stdout
    bad = run_agent("--tcp", "nonsense", "--token", "x", python=BARE)
    assert bad.returncode == 2
    one_error_line(bad)


def test_missing_numpy_is_named_in_one_line(tmp_path: Path) -> None:
    proc = run_agent("--stdio", "--cache-dir", str(tmp_path), python=BARE)
    assert proc.returncode == 1
    assert "numpy" in one_error_line(proc)


def test_zipapp_help_without_numpy(tmp_path: Path) -> None:
    from hwnas_bench.deploy import build_agent_zipapp

    pyz = tmp_path / "agent.pyz"
    pyz.write_bytes(build_agent_zipapp().data)
    proc = subprocess.run([*BARE, str(pyz), "--help"], capture_output=True, timeout=60, env={})
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"--stdio" in proc.stdout
