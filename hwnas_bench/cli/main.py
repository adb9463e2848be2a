"""The ``hwnas`` command. Errors end as one line on stderr and a non-zero exit, no traceback.

Exit codes (as the README promises): 0 success, 2 a configuration or usage mistake (a bad
option value, an unknown board, a broken hwnas.toml, a setting the board refuses), 1 anything
else, 130 interrupted. :func:`exit_code_for` is the mapping.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn, cast

from device_agent.protocol import ErrorCode
from hw_targets import HwTargetsError

from .. import __version__
from ..errors import AgentError, ConfigError, HwnasError
from ..plugins import plugin_manager
from . import agent, bench, targets

USAGE_EXIT = 2
#: Agent replies that mean the command was asked wrongly, so the user can change a setting: an
#: option the board refused (a --dim the model lacks, inputs of the wrong shape, inputs too
#: large for its cap, a provider it does not have, a bad token, a --governor it may not set)
USAGE_CODES = frozenset(
    code.value
    for code in (
        ErrorCode.BAD_INPUT,
        ErrorCode.BAD_REQUEST,
        ErrorCode.PROVIDER_UNAVAILABLE,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.INPUT_TOO_LARGE,
        ErrorCode.NOT_PERMITTED,
    )
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (with where to read more) and exit 2."""

    def error(self, message: str) -> NoReturn:
        print(f"hwnas: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(USAGE_EXIT)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hwnas", description="Measure models on real boards; search architectures by it."
    )
    parser.add_argument("--version", action="version", version=f"hwnas-bench {__version__}")
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="on failure, print the full detail (agent stderr) and the traceback",
    )
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="verb", required=True, metavar="COMMAND"),
    )
    bench.register(sub)
    agent.register(sub)
    targets.register(sub)
    plugin_manager().hook.hwnas_add_commands(subparsers=sub)  # e.g. `hwnas search`
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()  # loads plugins: a broken one is a setup mistake, one line
    except HwTargetsError as exc:
        _report(exc, "-v" in (argv if argv is not None else sys.argv[1:]))
        return USAGE_EXIT
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or _Parser.error
        return exc.code if isinstance(exc.code, int) else USAGE_EXIT
    try:
        code: int = args.func(args)
    except (HwnasError, HwTargetsError) as exc:
        _report(exc, args.verbose)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("hwnas: interrupted", file=sys.stderr)
        return 130
    return code


def exit_code_for(exc: Exception) -> int:
    """2 for a mistake the user can fix in the command or the config, else 1."""
    if isinstance(exc, AgentError):
        usage = exc.code in USAGE_CODES
    else:
        usage = isinstance(exc, (ConfigError, HwTargetsError))
    return USAGE_EXIT if usage else 1


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
