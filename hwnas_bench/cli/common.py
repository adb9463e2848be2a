"""Options every verb that talks to a board shares, and how they become a Device."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import load_config
from ..device import Device
from ..errors import ConfigError
from ..targets import TOKEN_ENV, TargetSpec, serial_target, ssh_target


def positive_float(text: str) -> float:
    """argparse type: a number > 0 (a timeout of 0 or less would fail every call)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got '{text}'")
    return value


def add_target_options(parser: argparse.ArgumentParser, positional: bool = False) -> None:
    group = parser.add_argument_group("target")
    if positional:
        group.add_argument("target", nargs="?", default=None, help="board name from the config")
    else:
        group.add_argument("--target", "-t", default=None, help="board name (default: local)")
    group.add_argument("--ssh", metavar="USER@HOST[:PORT]", help="a board over SSH, no config")
    group.add_argument("--serial", metavar="PORT[@BAUD]", help="a board on a serial line/URL")
    group.add_argument(
        "--remote-python",
        default="python3",
        metavar="PATH",
        help="the board's python for --ssh (default python3; often a venv's bin/python)",
    )
    group.add_argument(
        "--trust-host-key",
        action="store_true",
        help="accept and remember an unknown SSH host key (otherwise it is refused)",
    )
    group.add_argument("--config", type=Path, default=None, help="hwnas.toml to read")
    group.add_argument(
        "--timeout", type=positive_float, default=None, metavar="S", help="seconds per call (> 0)"
    )
    group.add_argument(
        "--token",
        default=None,
        help=f"shared secret of an agent serving TCP (--tcp ... --token T); default ${TOKEN_ENV}",
    )


def resolve_target(args: argparse.Namespace) -> TargetSpec:
    chosen = [x for x in (args.target, args.ssh, args.serial) if x]
    if len(chosen) > 1:
        raise ConfigError("give one of a target name, --ssh or --serial")
    if args.ssh:
        return ssh_target(
            args.ssh, python=args.remote_python, trust_unknown_host=args.trust_host_key
        )
    if args.serial:
        return serial_target(args.serial)
    return load_config(args.config).target(args.target or "local")


def open_device(args: argparse.Namespace, spec: TargetSpec | None = None) -> Device:
    """The Device of the verb's target (``spec`` when the caller resolved it already)."""
    spec = spec or resolve_target(args)
    options: dict[str, object] = {"token": args.token}  # None: the config's, else $HWNAS_...
    if args.timeout:
        options["timeout"] = args.timeout
    return spec.device(**options)
