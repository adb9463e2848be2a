"""A TCP agent before authentication, against a local user who owns all of 127.0.0.0/8.

Each attack runs against a real ``--tcp`` agent over loopback, bounded in time and size,
and a real client must still get its ``hello`` served while it runs.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.protocol import MAGIC, Frame, FrameType, encode_frame
from device_agent.protocol.frames import PRELUDE

from .raw_agent import TcpAgent, error_code


@pytest.fixture
def tcp_agent(tmp_path: Path) -> Iterator[TcpAgent]:
    agent = TcpAgent(tmp_path / "cache", "--auth-timeout-s", "60")
    yield agent
    agent.close()


def served(agent: TcpAgent, source: str | None = None) -> float:
    """Seconds a new client from ``source`` took to get a hello with the token answered ok."""
    start = time.monotonic()
    with agent.connect(source) as client:
        reply = client.request({"op": "hello", "token": agent.token})
        assert reply.header["ok"] is True, reply.header
    return time.monotonic() - start


def is_closed(sock: socket.socket) -> bool:
    """Whether the peer has ended this connection, without reading what it sent."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
    return info[0] != 1  # tcpi_state: 1 is ESTABLISHED (CLOSE_WAIT after a FIN, CLOSE after RST)


def wait_closed(sock: socket.socket, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_closed(sock):
            return True
        time.sleep(0.05)  # polling a socket's state: there is no event to wait on
    return is_closed(sock)


# -- slots -----------------------------------------------------------------------------------


def test_silent_sockets_from_two_addresses_do_not_keep_real_clients_out(
    tcp_agent: TcpAgent,
) -> None:
    """8 silent sockets from two addresses used to answer every real client busy."""
    silent = [tcp_agent.connect(f"127.0.0.{2 + i % 2}") for i in range(8)]
    try:
        for n in range(24):
            # the attacker keeps every slot it can: one more silent socket per real client
            silent.append(tcp_agent.connect(f"127.0.0.{2 + n % 2}"))
            assert served(tcp_agent) < 5.0
        # the agent closed silent sockets to make room, and kept the newest ones
        closed = [c for c in silent if wait_closed(c.sock, 0.0)]
        assert len(closed) >= 24
        assert not any(is_closed(c.sock) for c in silent[-4:])
        assert tcp_agent.proc.poll() is None
    finally:
        for client in silent:
            client.close()


def test_authenticated_clients_are_never_closed_to_make_room(tmp_path: Path) -> None:
    agent = TcpAgent(tmp_path / "cache", "--max-connections", "2")
    try:
        with agent.authed() as a, agent.authed() as b:
            with agent.connect("127.0.0.2") as stranger:
                seq = stranger.send(FrameType.REQUEST, {"op": "hello", "token": agent.token})
                got = stranger.wait_closed(10)
                assert [(f.seq, error_code(f)) for f in got] == [(seq, "busy")]  # type: ignore[union-attr]
            assert a.hello_ok()
            assert b.hello_ok()
    finally:
        agent.close()


# -- frame size ------------------------------------------------------------------------------


def prelude(seq: int, hlen: int, plen: int) -> bytes:
    head = PRELUDE.pack(MAGIC, 1, FrameType.REQUEST, 0, seq, hlen, plen)
    return head + struct.pack(">I", zlib.crc32(head))


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_large_frame_before_hello_is_refused_at_once_and_closed(tcp_agent: TcpAgent) -> None:
    with tcp_agent.connect() as client:
        start = time.monotonic()
        client.send_bytes(prelude(7, 20, 8 * 1024 * 1024))  # a hello claiming 8 MiB
        got = client.wait_closed(10)
        assert time.monotonic() - start < 5.0
        assert len(got) == 1
        assert isinstance(got[0], Frame)
        assert (got[0].seq, error_code(got[0])) == (7, "frame_too_large")
        assert "before a successful hello" in got[0].header["error"]["message"]
    assert served(tcp_agent) < 5.0


def nested_preludes(extra: int) -> bytes:
    """Back-to-back 24-byte preludes, each claiming a body of 8 MiB (the most a frame may
    carry), ``extra`` preludes more than fill the first one's body: frame k's body ends 24
    bytes after frame k-1's, so each prelude past the first 8 MiB completes one more frame
    whose CRC fails, and the decoder used to check it over 8 MiB, 3 ms of CPU for 24 bytes."""
    size = 8 * 1024 * 1024
    count = size // 24 + extra
    return b"".join(prelude(seq, 0, size - 28) for seq in range(1, count + 1))


def test_nested_preludes_before_hello_cost_the_agent_no_cpu(tcp_agent: TcpAgent) -> None:
    """A prelude claiming 8 MiB and 24-byte preludes behind it cost 3 ms of CPU per 24 bytes
    (each failed CRC rescanned the buffer); before hello they are refused at the first."""
    attack = nested_preludes(1000)
    before = cpu_s(tcp_agent.proc.pid)
    stop = threading.Event()

    def attacker() -> None:
        for _ in range(3):
            if stop.is_set():
                return
            try:
                with tcp_agent.connect("127.0.0.9") as bad:
                    bad.send_bytes(attack)
                    bad.wait_closed(30)
            except OSError:  # closed by the agent mid-send: what it should do
                pass

    thread = threading.Thread(target=attacker)
    thread.start()
    try:
        for _ in range(3):
            assert served(tcp_agent) < 5.0  # a real client meanwhile
    finally:
        thread.join(120)
        stop.set()
    spent = cpu_s(tcp_agent.proc.pid) - before
    assert spent < 1.0, f"the agent spent {spent:.2f} s of CPU on the attack"
    assert tcp_agent.proc.poll() is None


# -- token guessing --------------------------------------------------------------------------


def test_guesses_from_fresh_addresses_share_one_budget(tmp_path: Path) -> None:
    """6.8 guesses/s when each connection came from a fresh address: now a global budget."""
    agent = TcpAgent(tmp_path / "cache", "--auth-fail-budget", "5", "--auth-fail-delay-s", "0.05")
    try:
        assert served(agent) < 5.0  # the real host has authenticated from 127.0.0.1 before
        answers: list[str] = []
        for n in range(30):
            with agent.connect(f"127.0.1.{n + 1}") as guesser:
                reply = guesser.request({"op": "hello", "token": f"guess{n}"})
                code = error_code(reply)
                answers.append(code)
                if code == "busy":
                    assert "not checked" in reply.header["error"]["message"]
                    assert guesser.wait_closed(10) == []  # refused, and closed
            if n % 5 == 4:
                assert served(agent) < 5.0  # the real host is served during the attack
        assert answers.count("unauthorized") == 5  # only the budget's tokens were compared
        assert answers.count("busy") == 25
        # a right token from a fresh address is not compared either, until the budget has
        # room again: the agent says so, it does not call the token wrong
        with agent.connect("127.0.2.1") as newcomer:
            reply = newcomer.request({"op": "hello", "token": agent.token})
            assert error_code(reply) == "busy"
    finally:
        agent.close()


def test_no_token_of_an_address_is_compared_while_it_pays_for_a_wrong_one(
    tmp_path: Path,
) -> None:
    """Else a guess on a fresh connection (or one the agent closed to make room) would be
    answered at once when right: an oracle that the waits do not slow down."""
    agent = TcpAgent(tmp_path / "cache", "--auth-fail-delay-s", "2")
    try:
        with agent.connect("127.0.0.5") as guesser:
            guesser.send(FrameType.REQUEST, {"op": "hello", "token": "guess0"})
            agent.wait_for_log("wrong token from 127.0.0.5", 10)
            start = time.monotonic()  # the failure is being paid for, until about start + 2
        with agent.connect("127.0.0.5") as same_address:
            reply = same_address.request({"op": "hello", "token": agent.token})
            assert reply.header["ok"] is True
        assert time.monotonic() - start >= 1.5
        assert served(agent, "127.0.0.6") < 1.0  # other addresses are not held up
    finally:
        agent.close()


# -- a client that never reads ---------------------------------------------------------------


def test_client_that_never_reads_is_closed_at_the_auth_deadline(tmp_path: Path) -> None:
    agent = TcpAgent(tmp_path / "cache", "--auth-timeout-s", "3")
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", agent.port))
        start = time.monotonic()
        sock.setblocking(False)
        frames = b"".join(
            encode_frame(FrameType.REQUEST, seq, {"op": "reset"}) for seq in range(1, 2001)
        )
        sent, stalled_since = 0, None
        # send requests (each answered "unauthorized") until the agent stops reading them
        while time.monotonic() - start < 2.5 and sent < 64 * 1024 * 1024:
            try:
                sent += sock.send(frames)
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 0.5:
                    break
                time.sleep(0.01)  # the agent is not reading: nothing to wait on
        assert stalled_since is not None, "the agent kept reading: the test proves nothing"
        # the agent is stuck writing replies nobody reads; the auth deadline still holds
        assert wait_closed(sock, 3 + 3.0 - (time.monotonic() - start))
        sock.close()
        assert served(agent) < 5.0
    finally:
        agent.close()


# -- the token off the command line ----------------------------------------------------------


def test_token_file_keeps_the_token_out_of_the_command_line(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("f1le-s3cret\n")
    secret.chmod(0o600)
    agent = TcpAgent(
        tmp_path / "cache", "--token-file", str(secret), token="f1le-s3cret", token_env=False
    )
    try:
        cmdline = Path(f"/proc/{agent.proc.pid}/cmdline").read_bytes()
        assert b"f1le-s3cret" not in cmdline
        assert served(agent) < 5.0
    finally:
        agent.close()
    assert "--token on the command line" not in agent.stderr()


def test_token_on_the_command_line_is_warned_about(tmp_path: Path) -> None:
    agent = TcpAgent(
        tmp_path / "cache", "--token", "argv-s3cret", token="argv-s3cret", token_env=False
    )
    try:
        assert served(agent) < 5.0
    finally:
        agent.close()
    warning = [
        line for line in agent.stderr().splitlines() if "--token on the command line" in line
    ]
    assert len(warning) == 1, agent.stderr()
    assert "--token-file" in warning[0]
    assert "argv-s3cret" not in warning[0]


@pytest.mark.parametrize(
    ("content", "why"),
    [("", "it is empty"), ("\nsecond line", "its first line is empty")],
)
def test_unusable_token_file_is_one_line(tmp_path: Path, content: str, why: str) -> None:
    from .test_agent_hostile import one_error_line, run_agent

    secret = tmp_path / "token"
    secret.write_text(content)
    proc = run_agent("--tcp", "127.0.0.1:0", "--token-file", str(secret))
    assert proc.returncode == 2
    assert why in one_error_line(proc)
    missing = run_agent("--tcp", "127.0.0.1:0", "--token-file", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert "--token-file" in one_error_line(missing)
