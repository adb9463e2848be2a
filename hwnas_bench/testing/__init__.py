"""Real parts for tests and benchmarks: a throwaway OpenSSH server, serial pty pairs, a
line-noise relay. Tests in this project and in users' projects use them instead of mocks."""

from __future__ import annotations

from .parts import MissingPart, require_binary
from .serial import FaultyRelay, PtyPair, start_pty_pair, start_serial_agent
from .sshd import SSHServer, start_sshd

__all__ = [
    "FaultyRelay",
    "MissingPart",
    "PtyPair",
    "SSHServer",
    "require_binary",
    "start_pty_pair",
    "start_serial_agent",
    "start_sshd",
]
