"""The ``hwnas`` command. Errors end as one line on stderr and a non-zero exit, no traceback.

Exit codes (as the README promises): 0 success, 2 a configuration or usage mistake (a bad
option value, an unknown board, a broken hwnas.toml, a setting the board refuses), 1 anything
else, 130 interrupted. :func:`exit_code_for` is the mapping.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, cast

from device_agent.protocol import ErrorCode
from hw_targets import HwTargetsError

from .. import __version__
from ..errors import AgentError, ConfigError, HwnasError
from ..plugins import plugin_manager
from . import agent, bench, targets

USAGE_EXIT = 2
#: Agent replies that mean the command was asked wrongly, so the user can change a setting: an
#: option the board refused (a --dim the model lacks, inputs of the wrong shape, inputs or
#: outputs too large for its caps, a provider it does not have, a bad token, a --governor it
#: may not set)
USAGE_CODES = frozenset(
    code.value
    for code in (
        ErrorCode.BAD_INPUT,
        ErrorCode.BAD_REQUEST,
        ErrorCode.PROVIDER_UNAVAILABLE,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.INPUT_TOO_LARGE,
        ErrorCode.OUTPUT_TOO_LARGE,
        ErrorCode.NOT_PERMITTED,
    )
)


class _DefaultsFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default, where it has one worth saying (not None,
    False, an empty list, or one its help already names)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default in ([], ())
            or "default" in text.lower()
        ):
            return action.help
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (with where to read more) and exit 2; an unknown
    option is answered with the closest option of its verb; ``--help`` shows the defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)
        self._argv: list[str] = []

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._argv = list(sys.argv[1:] if args is None else args)  # for error()'s hint
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        verb = self._verb()
        print(
            f"hwnas: error: {message}{_did_you_mean(message, verb)} (see {verb.prog} --help)",
            file=sys.stderr,
        )
        sys.exit(USAGE_EXIT)

    def _verb(self) -> argparse.ArgumentParser:
        """The (sub)command the arguments name: ``hwnas search ...`` -> search's parser."""
        parser: argparse.ArgumentParser = self
        for token in self._argv:
            verbs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            if verbs and token in verbs[0].choices:
                parser = verbs[0].choices[token]
        return parser


def _did_you_mean(message: str, parser: argparse.ArgumentParser) -> str:
    """`` (did you mean --trials?)`` for each unknown option close to one of the verb's."""
    prefix = "unrecognized arguments: "
    if not message.startswith(prefix):
        return ""
    known = [s for s in parser._option_string_actions if s.startswith("--")]
    pairs: list[tuple[str, str]] = []  # (typed, closest known)
    for token in message[len(prefix) :].split():
        name = token.split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if name.startswith("-") and close:
            pairs.append((name, close[0]))
    if len(pairs) == 1:
        return f" (did you mean {pairs[0][1]}?)"
    if pairs:
        return f" (did you mean {', '.join(f'{b} for {a}' for a, b in pairs)}?)"
    return ""


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
