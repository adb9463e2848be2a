"""Real parts for tests and benchmarks: a throwaway OpenSSH server, serial pty pairs, a
line-noise relay, a simulated INA226 power meter. Tests in this project and in users'
projects use them instead of mocks.

The meter's pytest fixtures (``simulated_ina226``, ``metered_target``) are named here too, but
imported only when asked for: this package is used without pytest (benchmarks/).
"""

from __future__ import annotations

from typing import Any

from .parts import MissingPart, require_binary
from .power_sim import SimulatedIna226, layout_ina226
from .serial import FaultyRelay, PtyPair, start_pty_pair, start_serial_agent
from .sshd import SSHServer, start_sshd

__all__ = [
    "FaultyRelay",
    "MissingPart",
    "PtyPair",
    "SSHServer",
    "SimulatedIna226",
    "layout_ina226",
    "metered_target",
    "require_binary",
    "simulated_ina226",
    "start_pty_pair",
    "start_serial_agent",
    "start_sshd",
]

_FIXTURES = ("metered_target", "simulated_ina226")


def __getattr__(name: str) -> Any:
    if name in _FIXTURES:
        from . import power_fixtures

        return getattr(power_fixtures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
