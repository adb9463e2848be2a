"""Reports of several measurements (one pytest session) and where baselines are kept.

A report is JSON with schema ``hwnas.report/1``: the board facts of every target and one
entry per measurement (test id, requested target, the board that served it, and the full
``Measurement``). ``--hw-save`` and ``--hw-autosave`` store reports as baselines in a
directory (``.hwnas/`` by default); ``--hw-compare`` reads one back.
"""

from __future__ import annotations

import datetime
import json
import platform
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HwnasError

REPORT_SCHEMA = "hwnas.report/1"


class ReportError(HwnasError):
    """A report or baseline that cannot be found or read."""


@dataclass(frozen=True)
class Entry:
    test: str  #: the pytest node id (or any key the caller chooses)
    target: str  #: what was asked for: a board name or ``tag:X``
    board: str  #: the board that served it
    measurement: dict[str, Any]  #: Measurement.to_dict()

    def as_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "target": self.target,
            "board": self.board,
            "measurement": self.measurement,
        }


def build_report(entries: Iterable[Entry]) -> dict[str, Any]:
    items = list(entries)
    boards = {e.board: e.measurement.get("board", {}) for e in items}
    return {
        "schema": REPORT_SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {"python": platform.python_version(), "node": platform.node()},
        "boards": boards,
        "results": [e.as_dict() for e in items],
    }


def write_report(path: Path, report: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def read_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read report {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != REPORT_SCHEMA:
        raise ReportError(f"{path} is not a {REPORT_SCHEMA} report")
    return data


def entries_by_test(report: Mapping[str, Any]) -> dict[str, Entry]:
    return {
        r["test"]: Entry(r["test"], r["target"], r["board"], r["measurement"])
        for r in report.get("results", [])
    }


class Storage:
    """Baselines in a directory: ``NAME.json`` (``--hw-save NAME``) or
    ``0001_20261128T101500.json`` (``--hw-autosave``, numbered in order)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _numbered(self) -> list[Path]:
        return sorted(p for p in self.root.glob("[0-9][0-9][0-9][0-9]_*.json"))

    def all(self) -> list[Path]:
        return sorted(self.root.glob("*.json"), key=lambda p: p.stat().st_mtime)

    def save(self, report: Mapping[str, Any], name: str | None = None) -> Path:
        if name is None:
            numbered = self._numbered()
            number = int(numbered[-1].name[:4]) + 1 if numbered else 1
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
            name = f"{number:04d}_{stamp}"
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise ReportError(f"baseline name '{name}' may use letters, digits, '.', '_', '-'")
        return write_report(self.root / f"{name}.json", report)

    def find(self, name: str | None) -> Path:
        """The baseline called ``name`` (a file stem or its 4-digit number); latest if None."""
        files = self.all()
        if not files:
            raise ReportError(f"no baselines in {self.root}; save one with --hw-save NAME")
        if name is None:
            return files[-1]
        for path in files:
            if path.stem == name or (name.isdigit() and path.name.startswith(f"{int(name):04d}_")):
                return path
        known = ", ".join(p.stem for p in files)
        raise ReportError(f"no baseline '{name}' in {self.root} (have: {known})")


# -- lines about a measurement's circumstances, shared by the CLI table and the pytest summary


def cpu_ranges(cpus: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (the syntax ``--cpus`` takes)."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    start = prev = None
    for cpu in [*ordered, None]:
        if cpu is not None and prev is not None and cpu == prev + 1:
            prev = cpu
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = cpu
    return ",".join(parts)


def busy_note(environment: Mapping[str, Any]) -> str | None:
    """Why the timing may be disturbed by other work: the agent's sentence, else a load
    average above the board's CPU count."""
    if environment.get("busy"):
        return str(environment["busy"])
    loads = [
        load[0]
        for load in (environment.get("load_avg_start"), environment.get("load_avg_end"))
        if isinstance(load, list) and load
    ]
    cores = environment.get("cpu_count")
    if loads and isinstance(cores, int) and max(loads) > cores:
        return f"load average {max(loads):.1f} on {cores} CPUs: other work was running"
    return None


def governor_note(environment: Mapping[str, Any]) -> str | None:
    """What became of ``--governor``: applied (and restored), or why not."""
    request = environment.get("governor_request")
    if not isinstance(request, Mapping) or not request.get("requested"):
        return None
    text = f"{request['requested']} requested"
    if request.get("applied"):
        previous = f" (was {request['previous']})" if request.get("previous") else ""
        restored = "" if request.get("restored", True) else ", NOT restored"
        return f"{text}, applied{previous}{restored}"
    return f"{text}, not applied: {request.get('reason') or 'unknown reason'}"


def short_power_reason(reason: str, verbose_flag: str = "-v", limit: int = 80) -> str:
    """The head of a long "why no power" reason: the full one lists every meter tried."""
    if len(reason) <= limit:
        return reason
    head = reason.split(":", 1)[0]
    return f"{head} ({verbose_flag} lists why for each meter)"
