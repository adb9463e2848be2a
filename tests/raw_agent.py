"""Talk to an agent subprocess frame by frame, bypassing the host's Channel (for fault tests)."""

from __future__ import annotations

import hashlib
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from device_agent.protocol import DamagedFrame, Frame, FrameDecoder, FrameType, encode_frame


class RawAgent:
    def __init__(self, cache: Path) -> None:
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
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.decoder = FrameDecoder()
        self.seq = 100

    def send_bytes(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(
        self, ftype: FrameType, header: dict[str, Any], payload: bytes = b"", seq: int | None = None
    ) -> int:
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.send_bytes(encode_frame(ftype, seq, header, payload))
        return seq

    def receive(self, timeout: float = 30.0) -> Frame | DamagedFrame:
        """The next frame from the agent (PROGRESS skipped); waits on the pipe."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            for event in self.decoder.events():
                if isinstance(event, (Frame, DamagedFrame)) and not (
                    isinstance(event, Frame) and event.type is FrameType.PROGRESS
                ):
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the agent")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                data = os.read(fd, 1 << 16)
                if not data:
                    raise EOFError(f"agent exited with {self.proc.wait()}")
                self.decoder.feed(data)

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

    def hello_ok(self) -> dict[str, Any]:
        reply = self.request({"op": "hello"})
        assert reply.header["ok"] is True, reply.header
        return reply.header

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def error_code(frame: Frame) -> str:
    assert frame.type is FrameType.REPLY, frame
    assert frame.header["ok"] is False, frame
    return str(frame.header["error"]["code"])
