"""``python -m device_agent --stdio | --serial PORT --baud N | --tcp HOST:PORT``."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path
from typing import List, Optional

from . import __version__
from .handlers import Handlers
from .links import SerialLink, SocketLink, StdioLink
from .model_store import ModelStore, default_cache_dir
from .protocol import PROTOCOL_VERSION
from .server import Agent

log = logging.getLogger("device_agent")


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="device_agent",
        description="hwnas device agent: benchmarks ONNX models on this board for a host.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--stdio", action="store_true", help="serve on stdin/stdout (local, SSH)")
    mode.add_argument("--serial", metavar="PORT", help="serve on a serial port or pyserial URL")
    mode.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        help="serve TCP connections (binds HOST; use 127.0.0.1 unless you mean it); "
        "needs --token or HWNAS_AGENT_TOKEN",
    )
    parser.add_argument("--baud", type=int, default=115200, help="serial baud rate")
    parser.add_argument("--token", help="shared secret a TCP host must send in hello")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where models are cached")
    parser.add_argument("--cache-max-mb", type=float, default=2048.0, help="model cache bound")
    parser.add_argument("--heartbeat-s", type=float, default=1.0, help="PROGRESS interval")
    parser.add_argument(
        "--power-plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module with discover(root, run_command) adding power meters (repeatable)",
    )
    parser.add_argument(
        "--power-root",
        type=Path,
        default=Path("/"),
        help="where /sys is found for power sensors (default /; for containers and tests)",
    )
    parser.add_argument("--log-level", default="INFO", help="stderr log level")
    parser.add_argument(
        "--version",
        action="version",
        version=f"device_agent {__version__} (protocol {PROTOCOL_VERSION})",
    )
    return parser.parse_args(argv)


def _serve_tcp(address: str, token: str, handlers: Handlers, heartbeat_s: float) -> None:
    host, _, port = address.rpartition(":")
    with socket.create_server((host or "127.0.0.1", int(port))) as server:
        log.info("serving TCP on %s:%s", *server.getsockname()[:2])
        while True:
            conn, peer = server.accept()
            log.info("connection from %s:%s", *peer[:2])
            link = SocketLink(conn)
            try:
                agent = Agent(link, handlers, token=token, heartbeat_s=heartbeat_s)
                if agent.serve() == "shutdown":
                    return
            finally:
                link.close()


def main(argv: Optional[List[str]] = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="device_agent: %(message)s"
    )
    store = ModelStore(args.cache_dir or default_cache_dir(), int(args.cache_max_mb * 1024 * 1024))
    if args.tcp:
        token = args.token or os.environ.get("HWNAS_AGENT_TOKEN")
        if not token:
            print("device_agent: --tcp needs --token or HWNAS_AGENT_TOKEN", file=sys.stderr)
            return 2
        _serve_tcp(
            args.tcp,
            token,
            Handlers(store, power_root=args.power_root, power_plugins=args.power_plugin),
            args.heartbeat_s,
        )
        return 0
    link = StdioLink() if args.stdio else SerialLink(args.serial, args.baud)
    handlers = Handlers(store, power_root=args.power_root, power_plugins=args.power_plugin)
    log.info("agent %s ready on %s", __version__, "stdio" if args.stdio else args.serial)
    try:
        # A serial line outlives host sessions: keep serving until asked to shut down.
        while Agent(link, handlers, heartbeat_s=args.heartbeat_s).serve() != "shutdown":
            if args.stdio:
                break
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # the port vanished (adapter unplugged): let systemd restart us
        log.error("link failed: %s", exc)
        return 1
    finally:
        link.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
