"""The terminal summary: one table per board, then the comparison with the baseline."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..facts import BoardFacts
from ..report import Entry, busy_note, cpu_ranges, governor_note, short_power_reason
from .state import HwState

HEADERS = ("test", "median ms", "p95 ms", "p99 ms", "throughput /s", "energy mJ", "power source")


def _num(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _rate(value: Any) -> str:
    return "-" if value is None else (f"{value:.0f}" if value >= 100 else f"{value:.3g}")


def _row(entry: Entry) -> tuple[str, ...]:
    m = entry.measurement
    lat, power = m["latency"], m["power"]
    return (
        entry.test,
        _num(lat["median_ms"]),
        _num(lat["p95_ms"]),
        _num(lat["p99_ms"]),
        _rate(m.get("throughput_ips")),
        _num(power.get("energy_mj")),
        power.get("source") or "none",
    )


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [HEADERS, *rows]) for i in range(len(HEADERS))]

    def line(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True))
        return "  ".join([first, *rest, cells[-1]])

    return [line(HEADERS), "-" * (sum(widths) + 2 * (len(widths) - 1)), *(line(r) for r in rows)]


def _board_line(board: str, facts: BoardFacts) -> str:
    return (
        f"{board}: {facts.what or '?'}, onnxruntime {facts.onnxruntime}, governor {facts.governor}"
    )


def flags_of(entry: Entry) -> list[str]:
    """What may have disturbed or shaped the run, named next to the drift flag."""
    m = entry.measurement
    env = m.get("environment") or {}
    flags = []
    if env.get("drift"):
        flags.append(f"drift {env.get('drift_slowdown_pct') or 0:+.1f}% (throttling?)")
    busy = busy_note(env)
    if busy:
        flags.append(f"busy: {busy}")
    governor = governor_note(env)
    if governor:
        flags.append(f"governor {governor}")
    asked = (m.get("settings") or {}).get("cpus")
    used = env.get("affinity") or asked or []
    cores = env.get("cpu_count")
    if used and (asked or (cores and len(used) < cores)):  # pinned, or held to fewer CPUs
        flags.append(f"CPUs {cpu_ranges(used)}")
    return flags


def write(tr: Any, state: HwState, verbose: bool = False) -> None:
    if not state.entries:
        return
    tr.write_sep("=", f"hwnas: {len(state.entries)} measurement(s)")
    by_board: dict[str, list[Entry]] = defaultdict(list)
    for entry in state.entries:
        by_board[entry.board].append(entry)
    for board, entries in sorted(by_board.items()):
        # the facts this session's hello gave (checked then), as its measurement keeps them
        facts = BoardFacts.from_mapping(entries[0].measurement.get("board") or {})
        tr.write_line(_board_line(board, facts), bold=True)
        ordered = sorted(entries, key=lambda e: e.test)
        for text in _table([_row(e) for e in ordered]):
            tr.write_line(text)
        for entry in ordered:
            flags = flags_of(entry)
            if flags:
                tr.write_line(f"  {entry.test}: {'; '.join(flags)}", yellow=True)
        reasons = {e.measurement["power"].get("reason") for e in entries} - {None}
        if not verbose:  # the full reason lists every meter tried: once per board, with -v
            reasons = {short_power_reason(r) for r in reasons}
        for reason in sorted(reasons):
            tr.write_line(f"  power unavailable: {reason}")
        tr.write_line("")
    if state.verdicts:
        tr.write_sep("-", "hwnas: comparison with baseline")
        for entry, verdict in state.verdicts:
            text = verdict.describe(entry.test, entry.board)
            tr.write_line(text, red=verdict.failed, bold=verdict.failed)
        failed = [v for _, v in state.verdicts if v.failed]
        unmeasured = sum(v.missing is not None for v in failed)
        if len(failed) > unmeasured:
            regressed = len(failed) - unmeasured
            tr.write_line(f"hwnas: {regressed} regression(s) beyond --hw-compare-fail", red=True)
        if unmeasured:
            tr.write_line(
                f"hwnas: {unmeasured} figure(s) in the baseline not measured in this run "
                "(--hw-compare-fail fails them)",
                red=True,
            )
    for warning in state.setup_warnings:
        tr.write_line(f"hwnas: warning: {warning}", yellow=True)
    for note in state.notes:
        tr.write_line(f"hwnas: {note}")
