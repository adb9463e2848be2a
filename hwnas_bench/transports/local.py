"""The ``local`` target: the agent as a subprocess of this process, over its stdin/stdout."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from pathlib import Path

from ..errors import ConnectError, ConnectionLostError
from .base import StderrTail, Transport


class LocalTransport(Transport):
    def __init__(
        self,
        target: str = "local",
        *,
        python: str = sys.executable,
        cache_dir: Path | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        super().__init__(target)
        self.python = python
        self.cache_dir = cache_dir
        self.extra_args = extra_args or []
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr = StderrTail()

    @property
    def description(self) -> str:
        return f"local agent ({self.python} -m device_agent)"

    @property
    def is_open(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def open(self, timeout: float) -> None:
        argv = [self.python, "-m", "device_agent", "--stdio", *self.extra_args]
        if self.cache_dir is not None:
            argv += ["--cache-dir", str(self.cache_dir)]
        self._stderr = StderrTail()
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise ConnectError(self.target, "start agent", f"{argv[0]}: {exc}") from exc
        assert proc.stderr is not None
        stderr = proc.stderr
        self._stderr.drain(lambda: os.read(stderr.fileno(), 4096))
        self._proc = proc

    def _lost(self, why: str) -> ConnectionLostError:
        code = self._proc.poll() if self._proc else None
        if code is not None:
            self._stderr.wait(2.0)  # its last words may still be in the pipe
        exit_note = f" (agent exit code {code})" if code is not None else ""
        tail = self._stderr.text()
        return ConnectionLostError(
            self.target, "read", f"{why}{exit_note}" + (f"; agent stderr:\n{tail}" if tail else "")
        )

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise ConnectionLostError(self.target, "io", "the agent is not running")
        return self._proc

    def read(self, max_bytes: int, timeout: float) -> bytes:
        proc = self._running()
        assert proc.stdout is not None  # always piped in open()
        fd = proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(timeout, 0.0))
        if not ready:
            return b""
        data = os.read(fd, max_bytes)
        if not data:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            raise self._lost("agent closed its output")
        return data

    def write(self, data: bytes) -> None:
        proc = self._running()
        assert proc.stdin is not None  # always piped in open()
        try:
            proc.stdin.write(data)
            proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise self._lost(f"agent stopped reading ({exc})") from exc

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
        try:
            proc.wait(timeout=5)  # closing stdin makes a healthy agent exit
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def diagnostics(self) -> str:
        return self._stderr.text()
