"""Serial transport: a UART, a USB-serial adapter, or any pyserial URL (socket://, rfc2217://).

The agent must already be serving on the board's end of the line (``python3 -m
device_agent --serial /dev/ttyS0``, typically from a systemd unit). Bytes on a serial line
can be lost or damaged, so this transport is marked unreliable and the channel retries.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConnectError, ConnectionLostError
from .base import Transport


class SerialTransport(Transport):
    reliable = False

    def __init__(self, target: str, url: str, baudrate: int = 115200) -> None:
        super().__init__(target)
        self.url = url
        self.baudrate = baudrate
        self._port: Any = None

    @property
    def description(self) -> str:
        return f"serial {self.url} @ {self.baudrate} baud"

    @property
    def is_open(self) -> bool:
        return self._port is not None and bool(self._port.is_open)

    def open(self, timeout: float) -> None:
        import serial

        try:
            self._port = serial.serial_for_url(
                self.url, baudrate=self.baudrate, timeout=0, write_timeout=max(timeout, 1.0)
            )
        except (serial.SerialException, ValueError, OSError) as exc:
            raise ConnectError(self.target, "open serial port", f"{self.url}: {exc}") from exc
        self._port.reset_input_buffer()

    def _io_error(self, step: str, exc: Exception) -> ConnectionLostError:
        return ConnectionLostError(self.target, step, f"{self.url}: {exc}")

    def read(self, max_bytes: int, timeout: float) -> bytes:
        import serial

        if self._port is None:
            raise ConnectionLostError(self.target, "read", "serial port is not open")
        try:
            self._port.timeout = max(timeout, 0.0)
            first: bytes = self._port.read(1)
            if not first:
                return b""
            waiting = min(int(self._port.in_waiting), max_bytes - 1)
            return first + (self._port.read(waiting) if waiting > 0 else b"")
        except (serial.SerialException, OSError) as exc:
            raise self._io_error("read", exc) from exc

    def write(self, data: bytes) -> None:
        import serial

        if self._port is None:
            raise ConnectionLostError(self.target, "write", "serial port is not open")
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as exc:
            raise self._io_error("write", exc) from exc

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            port.close()

    def transfer_time(self, nbytes: int) -> float:
        # 10 bit times per byte (start + 8 data + stop). URLs like socket:// ignore the baud
        # rate and are faster, so this only ever lengthens a timeout.
        return nbytes * 10 / self.baudrate
