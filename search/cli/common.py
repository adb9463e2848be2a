"""What the search verbs share: the measurement options, the bench overrides they make, and
the step lines they print. Light, as every module here: loaded by every ``hwnas`` start."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..settings import STATS

#: the latency statistics a budget or a comparison may use
LATENCY_STATS = list(STATS)


def add_measure_options(
    parser: argparse.ArgumentParser, *, min_time: float | None = None, threads: int | None = None
) -> None:
    """``--min-time`` and ``--threads``; ``min_time`` / ``threads``: the defaults the help
    names (the verb applies them; None: the bench's own)."""
    parser.add_argument(
        "--min-time",
        type=float,
        metavar="S",
        help="timed loop per measurement" + _default(min_time),
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="onnxruntime threads on the board" + _default(threads),
    )


def _default(value: object) -> str:
    return "" if value is None else f" (default: {value})"


def bench_overrides(min_time: float | None, threads: int | None) -> dict[str, Any]:
    """The bench settings ``--min-time`` and ``--threads`` give (an option left out: none)."""
    given = {"min_time_s": min_time, "threads": threads}
    return {key: value for key, value in given.items() if value is not None}


def say(line: str) -> None:
    """A step line: stderr, at once (stdout holds the result a script reads)."""
    print(line, file=sys.stderr, flush=True)
