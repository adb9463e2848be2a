"""``python -m device_agent --stdio | --serial PORT --baud N | --tcp HOST:PORT``.

Arguments are parsed with the standard library alone, so ``--help`` and argument mistakes
work on a board that lacks NumPy; the rest of the agent is imported after. A failure to
start is one line on stderr (``hwnas-agent: error: ...``), because it lands in a board's
system journal: exit status 2 for bad arguments, 1 for anything else.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, NoReturn, Optional, Sequence, Tuple

from . import __version__

if TYPE_CHECKING:
    from .handlers import Handlers

log = logging.getLogger("device_agent")

_PREFIX = "hwnas-agent: error: "


class _StartError(Exception):
    """The agent cannot start; the message is the one line the user sees."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{_PREFIX}{message} (see --help)\n")


class _Version(argparse.Action):
    """``--version``, reading the protocol version only when asked (it imports the protocol)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        try:
            from .protocol import PROTOCOL_VERSION

            protocol = str(PROTOCOL_VERSION)
        except ImportError as exc:  # a board without numpy: still say which agent this is
            protocol = f"unknown: {exc}"
        print(f"device_agent {__version__} (protocol {protocol})")
        parser.exit(0)


def _address(text: str) -> Tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port 0..65535, not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)  # [::1]:7777 names an IPv6 host


def _positive_number(text: str, unit: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a number of {unit} > 0, not {text!r}")
    return value


def _positive(text: str) -> float:
    return _positive_number(text, "seconds")


def _megabytes(text: str) -> float:
    return _positive_number(text, "MiB")


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text!r}")
    return int(text)


def _parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = _Parser(
        prog="device_agent",
        description="hwnas device agent: benchmarks ONNX models on this board for a host.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--stdio", action="store_true", help="serve on stdin/stdout (local, SSH)")
    mode.add_argument("--serial", metavar="PORT", help="serve on a serial port or pyserial URL")
    mode.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        type=_address,
        help="serve TCP connections (binds HOST; use 127.0.0.1 unless you mean it); "
        "needs --token-file, HWNAS_AGENT_TOKEN or --token",
    )
    parser.add_argument("--baud", type=int, default=115200, help="serial baud rate")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument(
        "--token-file",
        metavar="PATH",
        type=Path,
        help="file holding the shared secret a TCP host must send in hello (its first line)",
    )
    secret.add_argument(
        "--token",
        help="the shared secret itself; every local user can read it in ps and "
        "/proc/PID/cmdline, so prefer --token-file or HWNAS_AGENT_TOKEN",
    )
    tcp = parser.add_argument_group("TCP limits")
    tcp.add_argument(
        "--auth-timeout-s",
        metavar="S",
        type=_positive,
        default=10.0,
        help="close a connection without a successful hello after this (default 10)",
    )
    tcp.add_argument(
        "--idle-timeout-s",
        metavar="S",
        type=_positive,
        default=300.0,
        help="close a connection that sends no frame for this long (default 300)",
    )
    tcp.add_argument(
        "--max-connections",
        metavar="N",
        type=_count,
        default=8,
        help="connections served at once, at most 4 from one address before their hello; "
        "more are answered 'busy' and closed (default 8)",
    )
    tcp.add_argument(
        "--auth-fail-delay-s",
        metavar="S",
        type=_positive,
        default=0.5,
        help="wait before answering a failed hello, doubling per failure from the same "
        "address up to 8 s (default 0.5); 3 failures close the connection",
    )
    tcp.add_argument(
        "--auth-fail-budget",
        metavar="N",
        type=_count,
        default=30,
        help="failed hellos per minute from addresses that never sent the right token, all "
        "of them together; beyond it, their tokens are not checked (default 30)",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="where models are cached")
    parser.add_argument("--cache-max-mb", type=float, default=2048.0, help="model cache bound")
    parser.add_argument(
        "--max-input-mb",
        type=_megabytes,
        default=None,
        help="cap on the inputs of one benchmark, sent or synthesised (default: a quarter of "
        "the memory available at start, at most 1024)",
    )
    parser.add_argument(
        "--max-output-mb",
        type=_megabytes,
        default=None,
        help="cap on what one run of a model may allocate, its outputs and the tensors on the "
        "way to them (default: as --max-input-mb)",
    )
    parser.add_argument("--heartbeat-s", type=_positive, default=1.0, help="PROGRESS interval")
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
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    args = parser.parse_args(argv)
    args.token_on_command_line = args.token is not None
    if args.token_file is not None:
        try:
            args.token = args.token_file.read_text(encoding="utf-8").splitlines()[0]
        except (OSError, UnicodeDecodeError, IndexError) as exc:
            why = "it is empty" if isinstance(exc, IndexError) else str(exc)
            parser.error(f"argument --token-file: cannot read a token from it: {why}")
        if not args.token:
            parser.error("argument --token-file: its first line is empty")
    if args.tcp:
        args.token = args.token or os.environ.get("HWNAS_AGENT_TOKEN")
        if not args.token:
            parser.error("--tcp needs --token-file, HWNAS_AGENT_TOKEN or --token")
    if logging.getLevelName(args.log_level.upper()) not in range(0, 101):
        parser.error(f"argument --log-level: unknown level {args.log_level!r}")
    return args


def _handlers(args: argparse.Namespace) -> Handlers:
    try:
        from .handlers import Handlers
        from .model_store import ModelStore, default_cache_dir
    except ImportError as exc:
        raise _StartError(
            f"cannot import {exc.name or 'a module'} ({exc}); the agent needs Python >= 3.8 "
            "with numpy and onnxruntime"
        ) from exc
    cache = args.cache_dir or default_cache_dir()
    try:
        store = ModelStore(cache, int(args.cache_max_mb * 1024 * 1024))
    except OSError as exc:
        raise _StartError(f"cannot use the model cache {cache}: {exc}") from exc
    max_input = None if args.max_input_mb is None else int(args.max_input_mb * 1024 * 1024)
    max_output = None if args.max_output_mb is None else int(args.max_output_mb * 1024 * 1024)
    return Handlers(
        store,
        max_input,
        max_output_bytes=max_output,
        power_root=args.power_root,
        power_plugins=args.power_plugin,
    )


def _serve_tcp(args: argparse.Namespace) -> int:
    handlers = _handlers(args)  # first: it names a missing numpy in one line
    from .links import TcpListener
    from .tcp import TcpServer
    from .tcp_limits import TcpLimits

    host, port = args.tcp
    try:
        listener = TcpListener(host, port)
    except OSError as exc:
        raise _StartError(f"cannot listen on {host}:{port}: {exc}") from exc
    limits = TcpLimits(
        auth_timeout_s=args.auth_timeout_s,
        idle_timeout_s=args.idle_timeout_s,
        max_connections=args.max_connections,
        auth_fail_delay_s=args.auth_fail_delay_s,
        auth_fail_budget=args.auth_fail_budget,
    )
    if args.token_on_command_line:
        log.warning(
            "--token on the command line can be read by every user of this board "
            "(ps, /proc/%d/cmdline); use --token-file or HWNAS_AGENT_TOKEN",
            os.getpid(),
        )
    log.info("serving TCP on %s:%s", *listener.address)
    TcpServer(listener, handlers, args.token, heartbeat_s=args.heartbeat_s, limits=limits).serve()
    return 0


def _serve_stream(args: argparse.Namespace) -> int:
    handlers = _handlers(args)  # first: it names a missing numpy in one line
    from .links import Link, SerialLink, StdioLink
    from .server import Agent

    link: Link
    if args.stdio:
        link = StdioLink()
    else:
        try:
            link = SerialLink(args.serial, args.baud)
        except ImportError as exc:
            raise _StartError(f"serial mode needs pyserial ({exc})") from exc
        except (OSError, ValueError) as exc:  # serial.SerialException is an OSError
            raise _StartError(f"cannot open serial port {args.serial}: {exc}") from exc
    log.info("agent %s ready on %s", __version__, "stdio" if args.stdio else args.serial)
    try:
        # A serial line outlives host sessions: keep serving until asked to shut down.
        while Agent(link, handlers, heartbeat_s=args.heartbeat_s).serve() != "shutdown":
            if args.stdio:
                break
    except OSError as exc:  # the port vanished (adapter unplugged): let systemd restart us
        log.error("link failed: %s", exc)
        return 1
    finally:
        link.close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="device_agent: %(message)s"
    )
    try:
        return _serve_tcp(args) if args.tcp else _serve_stream(args)
    except KeyboardInterrupt:
        return 0
    except _StartError as exc:
        print(f"{_PREFIX}{exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: one line for the journal, the traceback when debugging
        log.debug("%s", traceback.format_exc())
        print(f"{_PREFIX}unexpected {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
