"""How every search verb ends: one ``hwnas: error:`` line and an exit code, as the host's verbs.

:func:`run_verb` wraps a verb: whatever the search, the board layer or the config raises on
purpose becomes one line on stderr (the storage URL's password never in it) and the exit code
``hwnas_bench.cli.main.exit_code_for`` gives, the search's own usage mistakes added to the
host's: 0 done, 2 a mistake in the command or the files, 1 anything else, 130 Ctrl-C.
Imports only light modules: it is loaded by every ``hwnas`` start.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

from hw_targets import HwTargetsError
from hwnas_bench.errors import HwnasError

from ..errors import DataError, InfeasibleBudgetError, SearchError, SettingsError, SpaceError

#: a verb: the parsed arguments in, the exit code out
Verb = Callable[[argparse.Namespace], int]
#: a verb that finished but whose result fails (a model off its card, a target left without
#: one): the host's code for anything that is not the user's to fix
FAILED = 1
#: Ctrl-C, as the host's verbs exit on it
INTERRUPTED = 130


def exit_code(exc: Exception) -> int:
    """The host's :func:`exit_code_for`, where the search's usage mistakes are 2 too."""
    from hwnas_bench.cli.main import USAGE_EXIT, exit_code_for

    from ..model_card import ModelCardError

    if isinstance(exc, (SettingsError, SpaceError, DataError, ModelCardError)):
        return USAGE_EXIT
    return exit_code_for(exc)


def hidden(args: argparse.Namespace, text: str) -> str:
    """``text`` without the ``--storage`` URL's password (a driver error may quote it)."""
    from hwnas_bench.lock_url import redact, url_password

    url = getattr(args, "storage", None)
    return redact(text, url_password(url) if url else None)


def print_error(exc: BaseException, args: argparse.Namespace) -> None:
    """One line on stderr; with ``hwnas -v``, the rest of the message and the traceback."""
    first, *rest = str(exc).splitlines() or [""]
    print(f"hwnas: error: {hidden(args, first)}", file=sys.stderr)
    if getattr(args, "verbose", False):
        import traceback

        detail = "\n".join([*rest, traceback.format_exc()]).strip("\n")
        print(hidden(args, detail), file=sys.stderr)


def run_verb(
    *, interrupted: Callable[[argparse.Namespace], str] | None = None
) -> Callable[[Verb], Verb]:
    """Decorate a verb so that its errors end the way every verb's do.

    ``interrupted`` says how to go on after Ctrl-C (``hwnas search`` names the resume); an
    :class:`InfeasibleBudgetError` is the search's answer, not a fault: its message goes to
    stdout with the rest of the result, and the exit code is 1.
    """

    def wrap(verb: Verb) -> Verb:
        @functools.wraps(verb)
        def run(args: argparse.Namespace) -> int:
            try:
                return verb(args)
            except InfeasibleBudgetError as exc:
                print(str(exc))
                return FAILED
            except (SearchError, HwnasError, HwTargetsError) as exc:
                print_error(exc, args)
                return exit_code(exc)
            except KeyboardInterrupt:
                how = f"; {interrupted(args)}" if interrupted is not None else ""
                print(f"hwnas: interrupted{how}", file=sys.stderr)
                return INTERRUPTED

        return run

    return wrap
