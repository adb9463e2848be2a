"""The variants table (plain text: a terminal, a log and a test read it alike) and
``compression.json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .choose import Variant

SCHEMA = "hwnas.compression/1"


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}" if x < 0.1 else f"{x:.3f}"


def _row(v: Variant, fp32: Variant) -> list[str]:
    t = v.timing
    drop = v.drop_points(fp32)
    return [
        v.name,
        "-" if v.accuracy is None else f"{100 * v.accuracy:.1f}%",
        "-" if drop is None or v is fp32 else f"{drop:+.1f}",
        _kb(v.size_bytes),
        _ms(t.p50_ms),
        _ms(t.p95_ms),
        "-" if not t.round_ms else f"{_ms(min(t.round_ms))}-{_ms(max(t.round_ms))}",
        "-" if t.ratio is None else f"x{t.ratio:.2f}",
        "n/a" if t.energy_mj is None else f"{t.energy_mj:.3g}",
        "CHOSEN" if v.chosen else v.reason,
    ]


def header(stat: str) -> list[str]:
    """The columns; "<stat> rounds" is the range of the per-round figures, "vs fp32" the
    ratio of the statistic over all rounds."""
    return [
        "variant", "accuracy", "drop pts", "size", "p50 ms", "p95 ms", f"{stat} rounds",
        "vs fp32", "mJ", "choice",
    ]  # fmt: skip


def render_table(variants: Sequence[Variant]) -> str:
    """One line per variant; the last column says chosen, or why not."""
    fp32 = variants[0]
    head = header(fp32.timing.stat)
    rows = [head, *(_row(v, fp32) for v in variants)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    lines = []
    for r in rows:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=False))
        ]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
    return "\n".join(lines)


def variant_dict(v: Variant, fp32: Variant, board: str) -> dict[str, Any]:
    return {
        "name": v.name,
        "kind": v.kind,
        "file": v.file,
        "accuracy": v.accuracy,
        "accuracy_drop_points": v.drop_points(fp32) if v is not fp32 else 0.0,
        "size_bytes": v.size_bytes,
        **v.timing.to_dict(),
        "measured_on": board if v.timing.measured else None,
        "chosen": v.chosen,
        "reason": v.reason or None,
        "details": v.details,
    }
