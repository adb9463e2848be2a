"""The ``hwnas`` command. Errors end as one line on stderr and a non-zero exit, no traceback."""

from __future__ import annotations

import argparse
import sys

from hw_targets import HwTargetsError

from .. import __version__
from ..errors import ConfigError, HwnasError
from ..plugins import plugin_manager
from . import agent, bench, targets


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwnas", description="Measure models on real boards; search architectures by it."
    )
    parser.add_argument("--version", action="version", version=f"hwnas-bench {__version__}")
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="on failure, print the full detail (agent stderr) and the traceback",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    bench.register(sub)
    agent.register(sub)
    targets.register(sub)
    plugin_manager().hook.hwnas_add_commands(subparsers=sub)  # e.g. `hwnas search`
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except (HwnasError, HwTargetsError) as exc:
        _report(exc, args.verbose)
        return 2 if isinstance(exc, (ConfigError, HwTargetsError)) else 1
    except KeyboardInterrupt:
        print("hwnas: interrupted", file=sys.stderr)
        return 130
    return code


def _report(exc: Exception, verbose: bool) -> None:
    """One line by default; the agent's stderr tail and the traceback with --verbose."""
    first, _, rest = str(exc).partition("\n")
    print(f"hwnas: error: {first}", file=sys.stderr)
    if verbose:
        import traceback

        if rest:
            print(rest, file=sys.stderr)
        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main())
