"""Target specs: how to reach a board, from a config file or a command-line shorthand."""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from device_agent.protocol import BenchSettings

from .device import Device
from .errors import ConfigError
from .transports.base import Transport

COMMON_KEYS: dict[str, type | tuple[type, ...]] = {
    "transport": str,
    "profile": str,
    "tags": list,
    "timeout": (int, float),
    "token": str,
    "description": str,
    "bench": dict,
}

#: The BenchSettings fields a board's ``bench`` table may set: how this board runs a model,
#: not how long to time it (warm-up, iterations and time limits stay the caller's).
BOARD_BENCH_KEYS: tuple[str, ...] = (
    "provider",
    "threads",
    "inter_op_threads",
    "graph_optimization",
    "cpus",
    "governor",
    "power_meter",
)


class BenchRule(Enum):
    """Which wins where a run's own setting and the board's ``[bench]`` table both name a
    field. The two rules are chosen where each verb builds its settings, by name."""

    #: ``hwnas bench``, ``hwnas profile``, the pytest plugin: one measurement the user asked
    #: for; a flag typed for this run is the more specific setting, the table fills the rest
    FLAG_WINS = "flag"
    #: search and compress: every candidate of a run is measured one way on a board, and the
    #: table is that board's own way (a resume checks it did not change)
    TABLE_WINS = "table"


def table_entries(
    spec: TargetSpec | None, rule: BenchRule, given: Collection[str] = ()
) -> dict[str, Any]:
    """The entries of the board's ``[bench]`` table that apply under ``rule``: all of them
    (TABLE_WINS), or those whose field is not in ``given``, the fields the run set itself
    (FLAG_WINS). Lists are copied, so settings never share one with the spec."""
    if spec is None:
        return {}
    table = spec.bench_copy()
    if rule is BenchRule.FLAG_WINS:
        return {key: value for key, value in table.items() if key not in given}
    return table


@dataclass(frozen=True)
class TargetSpec:
    """A named board: which transport reaches it, with what options, and its labels."""

    name: str
    transport: str
    options: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None
    tags: tuple[str, ...] = ()
    timeout: float = 30.0
    token: str | None = field(default=None, repr=False)  #: never printed
    source: str | None = None  #: the config file it came from
    #: the board's own BenchSettings overrides (keys of BOARD_BENCH_KEYS), only those given
    bench: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # values are checked where they are parsed (config.parse_bench) and by the agent;
        # a key outside the table would only fail later, inside dataclasses.replace
        for key in self.bench:
            if key not in BOARD_BENCH_KEYS:
                raise ConfigError(
                    f"not a board bench setting (one of: {', '.join(BOARD_BENCH_KEYS)})",
                    file=self.source,
                    board=self.name,
                    key=f"bench.{key}",
                )

    def with_bench(
        self,
        settings: BenchSettings,
        *,
        rule: BenchRule = BenchRule.TABLE_WINS,
        given: Collection[str] = (),
    ) -> BenchSettings:
        """``settings`` with this board's ``bench`` table laid over them by ``rule``
        (:func:`table_entries`); every other field is left as it was."""
        return replace(settings, **table_entries(self, rule, given))

    def bench_copy(self) -> dict[str, Any]:
        """The ``bench`` table with its lists copied: settings made from it never share a
        list (``cpus``) with the spec, which stays its own."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self.bench.items()}

    def make_transport(self) -> Transport:
        from .plugins import transport_plugins

        plugins = transport_plugins()
        if self.transport not in plugins:
            raise ConfigError(
                f"unknown transport '{self.transport}' (known: {', '.join(plugins)})",
                file=self.source,
                board=self.name,
                key="transport",
            )
        transport: Transport = plugins[self.transport].factory(self.name, self.options)
        return transport

    def device(self, **kwargs: Any) -> Device:
        """A client for the board. The token: the one given, else the config's, else
        ``$HWNAS_AGENT_TOKEN`` (what a TCP agent started with ``--token`` asks for)."""
        kwargs.setdefault("timeout", self.timeout)
        if kwargs.get("token") is None:
            kwargs["token"] = self.token or os.environ.get(TOKEN_ENV) or None
        return Device(self.make_transport(), **kwargs)


#: The agent's shared secret for a TCP link when neither ``--token`` nor the config gives one.
TOKEN_ENV = "HWNAS_AGENT_TOKEN"

LOCAL = TargetSpec("local", "local", profile="local")

_SSH = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:@\s]+)(?::(?P<port>\d+))?$")


def ssh_target(
    spec: str, *, python: str = "python3", trust_unknown_host: bool = False
) -> TargetSpec:
    """``user@host[:port]`` (IPv6 in brackets) as a target named after it."""
    match = _SSH.match(spec.strip())
    if not match:
        raise ConfigError(f"--ssh expects user@host[:port], got '{spec}'")
    options: dict[str, Any] = {"host": match["host"].strip("[]"), "python": python}
    if match["user"]:
        options["user"] = match["user"]
    if match["port"]:
        options["port"] = int(match["port"])
    options["trust_unknown_host"] = trust_unknown_host
    return TargetSpec(spec, "ssh", options)


def serial_target(spec: str) -> TargetSpec:
    """``PORT[@BAUD]``: a device path or pyserial URL, optionally with a baud rate."""
    url, sep, baud = spec.rpartition("@")
    if not sep:
        return TargetSpec(spec, "serial", {"url": spec})
    if not url or not baud.strip().isdigit() or int(baud) <= 0:
        raise ConfigError(
            f"--serial expects PORT[@BAUD] (e.g. /dev/ttyUSB0@921600): bad baud rate '{baud}'"
            if url
            else f"--serial expects PORT[@BAUD], got '{spec}'"
        )
    return TargetSpec(spec, "serial", {"url": url, "baud": int(baud)})
