"""Tables for people: a Measurement, a profile, board facts (rich, on stdout)."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from ..device import Profile
from ..facts import BoardFacts
from ..measurement import Measurement
from ..report import busy_note, cpu_ranges, governor_note, short_power_reason


def _ms(value: float) -> str:
    return f"{value:.4f}" if value < 1 else f"{value:.3f}"


def measurement_table(m: Measurement) -> Table:
    lat = m.latency
    title = f"{m.model.name or m.model.sha256[:12]} on {m.target}"
    table = Table(title=title, header_style="bold")
    table.add_column("statistic")
    table.add_column("value", justify="right")
    rows: list[tuple[str, str]] = [
        ("samples (n)", str(lat.n)),
        ("mean ms", _ms(lat.mean_ms)),
        ("median ms", _ms(lat.median_ms)),
        ("p90 ms", _ms(lat.p90_ms)),
        ("p95 ms", _ms(lat.p95_ms)),
        ("p99 ms", _ms(lat.p99_ms)),
        ("min / max ms", f"{_ms(lat.min_ms)} / {_ms(lat.max_ms)}"),
        ("std / IQR ms", f"{_ms(lat.std_ms)} / {_ms(lat.iqr_ms)}"),
        ("outliers (Tukey)", str(lat.outliers)),
        ("throughput /s", f"{m.throughput_ips:.1f}" if m.throughput_ips else "-"),
    ]
    if m.power.mean_w is not None:
        rows.append(("power W", f"{m.power.mean_w:.3f}"))
        rows.append(("energy mJ/inference", f"{m.power.energy_mj:.4f}"))
        rows.append(("power source", m.power.source or "-"))
    else:
        rows.append(("power", "unavailable (reason below)"))
    if m.memory.peak_rss_mb is not None:
        rows.append(("peak RSS MB", f"{m.memory.peak_rss_mb:.1f}"))
    env = m.environment
    env_dict = dataclasses.asdict(env)
    if env.drift is not None:
        drift = (
            f"{'YES' if env.drift else 'no'} ({env.drift_slowdown_pct:+.1f}% last vs first quarter)"
        )
        rows.append(("drift", drift))
    busy = busy_note(env_dict)
    if busy:
        rows.append(("busy", f"YES: {busy}"))
    if env.governor is not None:
        rows.append(("governor", str(env.governor)))
    asked = governor_note(env_dict)
    if asked:
        rows.append(("--governor", asked))
    if env.affinity:
        of = f" of {env.cpu_count}" if env.cpu_count else ""
        rows.append(("CPUs (affinity)", f"{cpu_ranges(env.affinity)}{of}"))
    if env.throttled is not None:
        rows.append(("CPU clock dropped", "YES (throttled)" if env.throttled else "no"))
    if env.temperature_c_end:
        hottest = max((t for t in env.temperature_c_end.values() if t is not None), default=None)
        if hottest is not None:
            rows.append(("max temperature °C (end)", f"{hottest:.1f}"))
    threads = m.settings.threads
    rows.append(("threads / provider", f"{threads or 'auto'} / {m.settings.provider}"))
    for item in m.inputs:
        rows.append((f"input {item.get('name')}", _input_shape(item)))
    rows.append(("stopped by", str(m.stopped_by)))
    for name, value in rows:
        table.add_row(name, value)
    return table


def _input_shape(item: dict[str, Any]) -> str:
    """``8x64 float32``, and the declared shape where it had names (``batch x 64``)."""
    shape = "x".join(str(d) for d in item.get("shape") or []) or "scalar"
    text = f"{shape} {item.get('dtype', '')}".strip()
    declared = item.get("declared")
    if declared and any(not isinstance(d, int) for d in declared):
        text += f" (declared {' x '.join(str(d) for d in declared)})"
    return text


def measurement_notes(m: Measurement, verbose: bool = False) -> list[str]:
    """Lines printed under the table: what is missing and why, what was assumed."""
    notes = []
    for item in m.inputs:
        for dim in item.get("defaulted") or []:
            notes.append(f"dim '{dim}' not given: measured with 1; set it with --dim {dim}=N")
    if m.power.mean_w is None:
        reason = m.power.reason or "no reason given"
        shown = reason if verbose else short_power_reason(reason, "hwnas -v")
        notes.append(f"power unavailable: {shown}")
    busy = busy_note(dataclasses.asdict(m.environment))
    if busy:
        notes.append(f"busy: {busy} (the timing may include waiting for the CPU)")
    notes.extend(m.notes)  # what the agent adjusted (e.g. threads above the pinned CPUs)
    if m.environment.drift:
        notes.append(
            "drift: the last quarter of samples was significantly slower than the first "
            "(thermal throttling or background load?)"
        )
    if m.stopped_by == "max_time" and m.latency.n < m.settings.min_iterations:
        notes.append(f"stopped by --max-time after {m.latency.n} runs, before --min-iterations")
    if m.environment.throttled:
        notes.append("the CPU clock fell during the run (thermal or power throttling)")
    return notes


def profile_table(profile: Profile, top: int) -> Table:
    summary = profile.summary
    table = Table(
        title=f"per-node time on {profile.target} ({summary.get('runs')} runs)", header_style="bold"
    )
    for col, justify in (("node", "left"), ("op", "left"), ("calls", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    rows = summary.get("nodes", [])[:top]
    spread = any("median_us" in row for row in rows)  # agents since protocol 1.x send these
    for col in ("mean µs", *(("median µs", "p95 µs") if spread else ()), "share"):
        table.add_column(col, justify="right")
    shapes = any(row.get("input_shapes") for row in rows)
    if shapes:
        table.add_column("input shapes")
    for row in rows:
        cells = [row["name"], row["op_type"], str(row["calls"]), f"{row['mean_us']:.1f}"]
        if spread:
            cells += [_us(row.get("median_us")), _us(row.get("p95_us"))]
        cells.append(f"{100 * row['share']:.1f}%")
        if shapes:
            cells.append(", ".join("x".join(map(str, s)) for s in row.get("input_shapes") or []))
        table.add_row(*cells)
    return table


def _us(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def facts_table(target: str, facts: BoardFacts) -> Table:
    table = Table(title=f"{target}: board facts", show_header=False)
    table.add_column("fact", style="bold")
    table.add_column("value")
    keys = (
        "device_model",
        "cpu_model",
        "arch",
        "cores_logical",
        "cores_physical",
        "memory_mb",
        "os",
        "kernel",
        "jetson_l4t",
        "python",
        "numpy",
        "onnxruntime",
        "providers",
        "governor",
        "cpu_freq_mhz",
        "temperature_c",
        "power_meters",
        "power_unavailable",
        "agent_version",
        "protocol",
        "cache",
    )
    for key in keys:
        value = facts.get(key)  # as JSON had it: str() of a list reads as before
        if value not in (None, [], {}):
            table.add_row(key, str(value))
    return table


def console(stderr: bool = False) -> Console:
    """Rich console; when output goes to a file or pipe, wide enough not to wrap names.

    Strings print as they are: no markup (a board name, a lease note, an ONNX node name or
    an error message holding ``[/]`` or ``[red]`` is not rich's to read) and no ``:emoji:``
    codes. Style a table through its columns, or with :class:`rich.text.Text`."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, markup=False, emoji=False, width=width)


def say(message: str) -> None:
    """A plain line on stdout (never wrapped, easy to grep)."""
    print(message, flush=True)


def bench_summary(bench: Mapping[str, Any]) -> str:
    """A board's ``bench`` table on one line: ``threads=2, cpus=0-3`` ("" when empty)."""
    return ", ".join(
        f"{key}={cpu_ranges(value) if key == 'cpus' else value}" for key, value in bench.items()
    )
