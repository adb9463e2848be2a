"""The ``hwnas`` command. Errors end as one line on stderr and a non-zero exit, no traceback."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import ConfigError, HwnasError
from . import agent, bench


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwnas", description="Measure models on real boards; search architectures by it."
    )
    parser.add_argument("--version", action="version", version=f"hwnas-bench {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    bench.register(sub)
    agent.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"hwnas: error: {exc}", file=sys.stderr)
        return 2
    except HwnasError as exc:
        print(f"hwnas: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hwnas: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
