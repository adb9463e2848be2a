"""The plugin's command-line options (``pytest --help``, section "hwnas")."""

from __future__ import annotations

import argparse
import math

import pytest


def _seconds(text: str) -> float:
    """A finite number of seconds >= 0, for argparse (a typo must not mean "wait forever")."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, not {text!r}")
    return value


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("hwnas", "hwnas: measure models on real boards")
    group.addoption(
        "--hw-target",
        action="append",
        default=[],
        metavar="NAME|tag:X",
        help="board to run hw tests on (repeatable: tests run once per target). Default: local",
    )
    group.addoption("--hw-config", metavar="PATH", default=None, help="hwnas.toml with the boards")
    group.addoption("--hw-json", metavar="PATH", default=None, help="write a JSON report")
    group.addoption("--hw-save", metavar="NAME", default=None, help="save results as baseline NAME")
    group.addoption(
        "--hw-autosave", action="store_true", help="save results as the next numbered baseline"
    )
    group.addoption(
        "--hw-compare",
        metavar="NAME",
        nargs="?",
        const="",
        default=None,
        help="compare with baseline NAME (a name or number; latest if omitted)",
    )
    group.addoption(
        "--hw-compare-fail",
        metavar="EXPR",
        default=None,
        help="fail the session on a regression, e.g. 'p95:10%%,energy:5%%' or 'p99:2ms' "
        "(implies --hw-compare)",
    )
    group.addoption(
        "--hw-storage", metavar="DIR", default=".hwnas", help="baseline directory (default .hwnas)"
    )
    group.addoption(
        "--hw-min-time",
        type=_seconds,
        default=None,
        metavar="S",
        help="min timed seconds per bench",
    )
    group.addoption(
        "--hw-lease-timeout",
        type=_seconds,
        default=600.0,
        metavar="S",
        help="how long to wait for a busy board (default 600)",
    )
    group.addoption(
        "--hw-skip-unreachable",
        action="store_true",
        help="skip, instead of failing, tests whose board cannot be reached",
    )
