"""Talk to an agent frame by frame, bypassing the host's Channel (for fault tests).

``RawAgent`` drives an agent subprocess over its stdin/stdout; ``TcpAgent`` starts a
``--tcp`` agent and ``TcpAgent.connect()`` gives a ``RawTcp`` client on one connection.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from device_agent.protocol import DamagedFrame, Frame, FrameDecoder, FrameType, encode_frame
from hwnas_bench.testing.parts import wait_for_line


class FrameClient:
    """The frame-level conversation, over whatever byte stream a subclass provides."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder()
        self.seq = 100
        self.hello_fields: dict[str, Any] = {}  # sent in every hello_ok (a TCP token)

    # what a subclass provides
    def send_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def _fileno(self) -> int:
        raise NotImplementedError

    def _read(self) -> bytes:
        raise NotImplementedError

    def _eof(self) -> EOFError:
        return EOFError("the agent closed the stream")

    # the conversation
    def send(
        self, ftype: FrameType, header: dict[str, Any], payload: bytes = b"", seq: int | None = None
    ) -> int:
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.send_bytes(encode_frame(ftype, seq, header, payload))
        return seq

    def receive(self, timeout: float = 30.0) -> Frame | DamagedFrame:
        """The next frame from the agent (PROGRESS skipped); waits on the stream."""
        return self.receive_any(timeout, progress=False)

    def receive_any(self, timeout: float = 30.0, progress: bool = True) -> Frame | DamagedFrame:
        """The next frame from the agent, PROGRESS frames included when ``progress``."""
        fd = self._fileno()
        deadline = time.monotonic() + timeout
        while True:
            for event in self.decoder.events():
                if isinstance(event, (Frame, DamagedFrame)) and not (
                    not progress and isinstance(event, Frame) and event.type is FrameType.PROGRESS
                ):
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the agent")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                data = self._read()
                if not data:
                    raise self._eof()
                self.decoder.feed(data)

    def wait_closed(self, timeout: float = 30.0) -> list[Frame | DamagedFrame]:
        """Read until the agent closes the stream; return the frames that came first."""
        got: list[Frame | DamagedFrame] = []
        while True:
            try:
                got.append(self.receive_any(timeout))
            except EOFError:
                return got

    def request(self, header: dict[str, Any], payload: bytes = b"") -> Frame:
        seq = self.send(FrameType.REQUEST, header, payload)
        frame = self.receive()
        assert isinstance(frame, Frame), frame
        assert frame.seq == seq, (frame, seq)
        return frame

    def upload(self, data: bytes, sha: str | None = None, chunk: int = 65536) -> Frame:
        sha = sha or hashlib.sha256(data).hexdigest()
        reply = self.request({"op": "put_model", "sha256": sha, "size": len(data)})
        if reply.header.get("cached"):
            return reply
        last = reply
        for offset in range(0, len(data), chunk):
            seq = self.send(FrameType.CHUNK, {"offset": offset}, data[offset : offset + chunk])
            last = self.receive()  # type: ignore[assignment]
            assert isinstance(last, Frame)
            assert last.seq == seq
            if last.type is FrameType.REPLY:
                return last  # an error
        return last

    def hello_ok(self, **fields: Any) -> dict[str, Any]:
        reply = self.request({"op": "hello", **self.hello_fields, **fields})
        assert reply.header["ok"] is True, reply.header
        return reply.header


class RawAgent(FrameClient):
    """An agent subprocess on its stdin/stdout."""

    def __init__(self, cache: Path, *extra_args: str) -> None:
        super().__init__()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "device_agent",
                "--stdio",
                "--cache-dir",
                str(cache),
                "--log-level",
                "ERROR",
                *extra_args,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def send_bytes(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _fileno(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def _read(self) -> bytes:
        return os.read(self._fileno(), 1 << 16)

    def _eof(self) -> EOFError:
        return EOFError(f"agent exited with {self.proc.wait()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class RawTcp(FrameClient):
    """One TCP connection to a ``--tcp`` agent."""

    def __init__(self, port: int, source: str | None = None) -> None:
        super().__init__()
        # ``source``: another loopback address (127.0.0.2, ...) to connect from, so that the
        # agent sees a different peer
        bind = None if source is None else (source, 0)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=bind)

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fileno(self) -> int:
        return self.sock.fileno()

    def _read(self) -> bytes:
        try:
            return self.sock.recv(1 << 16)
        except ConnectionResetError:
            return b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawTcp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


TOKEN = "s3cret"


class TcpAgent:
    """A ``--tcp`` agent subprocess on a port it picks itself (``127.0.0.1:0``)."""

    def __init__(
        self, cache: Path, *extra: str, token: str = TOKEN, token_env: bool = True
    ) -> None:
        """``token``: what clients send; the agent is given it in ``HWNAS_AGENT_TOKEN``
        unless ``token_env`` is False (then ``extra`` must give it)."""
        self.token = token
        env = {k: v for k, v in os.environ.items() if k != "HWNAS_AGENT_TOKEN"}
        if token_env:
            env["HWNAS_AGENT_TOKEN"] = token
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "device_agent",
                "--tcp",
                "127.0.0.1:0",
                "--cache-dir",
                str(cache),
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,  # the environment, not argv: every local user can read a process's argv
        )
        try:
            seen = wait_for_line(self.proc, b"serving TCP on", 60)
            while not re.search(rb"serving TCP on [\d.]+:\d+\r?\n", seen):
                seen += wait_for_line(self.proc, b"\n", 10)
        except Exception:
            self.close()
            raise
        match = re.search(rb"serving TCP on [\d.]+:(\d+)", seen)
        assert match is not None, seen
        self.port = int(match.group(1))
        self._stderr = bytearray(seen)
        self._more = threading.Condition()  # notified as stderr grows
        self._reader = threading.Thread(target=self._keep_stderr, daemon=True)
        self._reader.start()

    def _keep_stderr(self) -> None:
        """Keep reading stderr (so the agent never blocks on a full pipe), and keep it."""
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while True:
            data = os.read(fd, 4096)
            with self._more:
                if data:
                    self._stderr += data
                self._more.notify_all()
            if not data:
                return

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Wait until the agent has logged ``text`` (at its default level, INFO)."""
        want = text.encode()
        with self._more:
            if not self._more.wait_for(lambda: want in self._stderr, timeout):
                raise TimeoutError(f"the agent did not log {text!r}")

    def stderr(self) -> str:
        """Everything the agent wrote to stderr; call after ``close``."""
        self._reader.join(10)
        return self._stderr.decode(errors="replace")

    def connect(self, source: str | None = None) -> RawTcp:
        return RawTcp(self.port, source)

    def authed(self) -> RawTcp:
        client = self.connect()
        client.hello_fields = {"token": self.token}
        client.hello_ok()
        return client

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def error_code(frame: Frame) -> str:
    assert frame.type is FrameType.REPLY, frame
    assert frame.header["ok"] is False, frame
    return str(frame.header["error"]["code"])
