"""The built-in transports, registered through the same hook a plugin uses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hw_targets
from hw_targets import TransportPlugin, hookimpl

from .base import Transport


def agent_plugin_args() -> list[str]:
    """Command-line options that make an agent load the installed power readers."""
    args: list[str] = []
    for reader in hw_targets.power_readers():
        args += ["--power-plugin", reader.module]
    return args


def _path(options: Mapping[str, Any], key: str) -> Path | None:
    return Path(options[key]).expanduser() if key in options else None


def make_local(target: str, options: Mapping[str, Any]) -> Transport:
    import sys

    from .local import LocalTransport

    args = agent_plugin_args()
    if "power_root" in options:
        args += ["--power-root", str(_path(options, "power_root"))]
    return LocalTransport(
        target,
        python=options.get("python", sys.executable),
        cache_dir=_path(options, "cache_dir"),
        extra_args=args,
    )


def make_ssh(target: str, options: Mapping[str, Any]) -> Transport:
    from .ssh import SSHTransport

    return SSHTransport(
        target,
        options["host"],
        user=options.get("user"),
        port=options.get("port"),
        python=options.get("python", "python3"),
        identity_file=options.get("identity_file"),
        trust_unknown_host=bool(options.get("trust_unknown_host", False)),
        ssh_config=_path(options, "ssh_config"),
        known_hosts=_path(options, "known_hosts"),
        agent_args=agent_plugin_args(),
        plugin_modules=tuple(r.module for r in hw_targets.power_readers()),
    )


def make_serial(target: str, options: Mapping[str, Any]) -> Transport:
    from .serial import SerialTransport

    return SerialTransport(target, options["url"], int(options.get("baud", 115200)))


@hookimpl
def hwnas_transports() -> Sequence[TransportPlugin]:
    return [
        TransportPlugin(
            "local",
            make_local,
            keys={"python": str, "cache_dir": str, "power_root": str},
            description="the agent as a subprocess of this process (stdin/stdout)",
        ),
        TransportPlugin(
            "ssh",
            make_ssh,
            keys={
                "host": str,
                "user": str,
                "port": int,
                "python": str,
                "identity_file": str,
                "trust_unknown_host": bool,
                "ssh_config": str,
                "known_hosts": str,
            },
            required=("host",),
            description="paramiko exec channel; the agent is deployed as a zipapp",
        ),
        TransportPlugin(
            "serial",
            make_serial,
            keys={"url": str, "baud": int},
            required=("url",),
            description="pyserial port or URL (socket://, rfc2217://); the agent serves there",
        ),
    ]
