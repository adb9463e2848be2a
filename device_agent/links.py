"""Byte streams the agent serves on: stdio (local and SSH), a serial port, a TCP connection
(accepted from a ``TcpListener``).

Each link reads with a timeout and returns ``b""`` when nothing arrived, or ``None`` when
the stream has ended (the host went away); the serial line never ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
from typing import Any, Optional, Tuple


class Link:
    """What the agent needs of a byte stream."""

    def read(self, timeout: float) -> Optional[bytes]:
        raise NotImplementedError

    def write(self, data: bytes, timeout: Optional[float] = None) -> None:
        """Write all of ``data``; ``timeout`` bounds it where the stream can (a socket)."""
        raise NotImplementedError

    def interrupt(self) -> None:
        """End the stream from another thread, where it can be (default: it cannot)."""

    def close(self) -> None:
        """Release the stream (default: nothing to release)."""


class StdioLink(Link):
    """The agent's own stdin/stdout.

    The protocol gets a private duplicate of stdout, and fd 1 is pointed at stderr, so that
    a stray print or a native library's log line can never land in the middle of a frame.
    """

    def __init__(self) -> None:
        sys.stdout.flush()
        self._in = sys.stdin.fileno()
        self._out = os.dup(sys.stdout.fileno())
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def read(self, timeout: float) -> Optional[bytes]:
        ready, _, _ = select.select([self._in], [], [], timeout)
        if not ready:
            return b""
        data = os.read(self._in, 1 << 16)
        return data if data else None

    def write(self, data: bytes, timeout: Optional[float] = None) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._out, view)
            view = view[written:]

    def close(self) -> None:
        os.close(self._out)


class SerialLink(Link):
    """A serial port through pyserial (imported only in this mode)."""

    def __init__(self, port: str, baudrate: int) -> None:
        import serial  # type: ignore[import-untyped, unused-ignore]

        self._port: Any = serial.serial_for_url(port, baudrate=baudrate, timeout=0)
        self._port.reset_input_buffer()

    def read(self, timeout: float) -> Optional[bytes]:
        self._port.timeout = timeout
        first: bytes = self._port.read(1)
        if not first:
            return b""
        waiting = self._port.in_waiting
        return first + (self._port.read(waiting) if waiting else b"")

    def write(self, data: bytes, timeout: Optional[float] = None) -> None:
        self._port.write(data)
        self._port.flush()

    def close(self) -> None:
        self._port.close()


class SocketLink(Link):
    """One accepted TCP connection.

    Writes have a deadline (``write_timeout_s``, or the one a write is given): a host that
    stops reading our replies ends its session instead of holding a thread (and the board)
    for ever.
    """

    def __init__(self, conn: socket.socket, name: str = "", write_timeout_s: float = 60.0) -> None:
        self._conn = conn
        self.name = name
        self.write_timeout_s = write_timeout_s

    def read(self, timeout: float) -> Optional[bytes]:
        self._conn.settimeout(timeout)
        try:
            data = self._conn.recv(1 << 16)
        except socket.timeout:
            return b""
        except OSError:
            return None
        return data if data else None

    def write(self, data: bytes, timeout: Optional[float] = None) -> None:
        self._conn.settimeout(self.write_timeout_s if timeout is None else timeout)
        self._conn.sendall(data)  # socket.timeout is an OSError: the session ends

    def interrupt(self) -> None:
        """End the connection from another thread: its reads see the end of the stream."""
        with contextlib.suppress(OSError):  # already gone
            self._conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._conn.close()


class TcpListener:
    """A listening TCP socket; ``OSError`` from the constructor when it cannot bind."""

    def __init__(self, host: str, port: int, write_timeout_s: float = 60.0) -> None:
        self._sock = socket.create_server((host, port))
        self.write_timeout_s = write_timeout_s

    @property
    def address(self) -> Tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def accept(self, timeout: float) -> Optional[Tuple[SocketLink, str]]:
        """The next connection and its peer's address, or None after ``timeout`` seconds."""
        self._sock.settimeout(timeout)
        try:
            conn, peer = self._sock.accept()
        except socket.timeout:
            return None
        name = f"{peer[0]}:{peer[1]}"
        return SocketLink(conn, name, self.write_timeout_s), str(peer[0])

    def close(self) -> None:
        self._sock.close()
