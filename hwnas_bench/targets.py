"""Target specs: how to reach a board, from a config file or a command-line shorthand."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .device import Device
from .errors import ConfigError
from .transports.base import Transport

#: Keys each transport accepts in a board's config table (besides the common ones).
TRANSPORT_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "local": {"python": str, "cache_dir": str},
    "ssh": {
        "host": str,
        "user": str,
        "port": int,
        "python": str,
        "identity_file": str,
        "trust_unknown_host": bool,
        "ssh_config": str,
        "known_hosts": str,
    },
    "serial": {"url": str, "baud": int},
}
REQUIRED_KEYS = {"ssh": ("host",), "serial": ("url",)}
COMMON_KEYS: dict[str, type | tuple[type, ...]] = {
    "transport": str,
    "profile": str,
    "tags": list,
    "timeout": (int, float),
    "token": str,
    "description": str,
}


@dataclass(frozen=True)
class TargetSpec:
    """A named board: which transport reaches it, with what options, and its labels."""

    name: str
    transport: str
    options: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None
    tags: tuple[str, ...] = ()
    timeout: float = 30.0
    token: str | None = None
    source: str | None = None  #: the config file it came from

    def make_transport(self) -> Transport:
        opts = self.options
        if self.transport == "local":
            from .transports.local import LocalTransport

            cache = opts.get("cache_dir")
            return LocalTransport(
                self.name,
                **({"python": opts["python"]} if "python" in opts else {}),
                cache_dir=Path(cache).expanduser() if cache else None,
            )
        if self.transport == "ssh":
            from .transports.ssh import SSHTransport

            def path(key: str) -> Path | None:
                return Path(opts[key]).expanduser() if key in opts else None

            return SSHTransport(
                self.name,
                opts["host"],
                user=opts.get("user"),
                port=opts.get("port"),
                python=opts.get("python", "python3"),
                identity_file=opts.get("identity_file"),
                trust_unknown_host=bool(opts.get("trust_unknown_host", False)),
                ssh_config=path("ssh_config"),
                known_hosts=path("known_hosts"),
            )
        if self.transport == "serial":
            from .transports.serial import SerialTransport

            return SerialTransport(self.name, opts["url"], int(opts.get("baud", 115200)))
        raise ConfigError(
            f"unknown transport '{self.transport}' (known: {', '.join(TRANSPORT_KEYS)})",
            file=self.source,
            board=self.name,
            key="transport",
        )

    def device(self, **kwargs: Any) -> Device:
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("token", self.token)
        return Device(self.make_transport(), **kwargs)


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
    if sep and baud.isdigit():
        return TargetSpec(spec, "serial", {"url": url, "baud": int(baud)})
    return TargetSpec(spec, "serial", {"url": spec})
