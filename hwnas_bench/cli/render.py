"""Tables for people: a Measurement, a profile, board facts (rich, on stdout)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from ..device import Profile
from ..measurement import Measurement


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
    if env.drift is not None:
        drift = (
            f"{'YES' if env.drift else 'no'} ({env.drift_slowdown_pct:+.1f}% last vs first quarter)"
        )
        rows.append(("drift", drift))
    if env.governor is not None:
        rows.append(("governor", str(env.governor)))
    if env.throttled is not None:
        rows.append(("CPU clock dropped", "YES (throttled)" if env.throttled else "no"))
    if env.temperature_c_end:
        hottest = max((t for t in env.temperature_c_end.values() if t is not None), default=None)
        if hottest is not None:
            rows.append(("max temperature °C (end)", f"{hottest:.1f}"))
    threads = m.settings.get("threads")
    rows.append(("threads / provider", f"{threads or 'auto'} / {m.settings.get('provider')}"))
    rows.append(("stopped by", str(m.stopped_by)))
    for name, value in rows:
        table.add_row(name, value)
    return table


def measurement_notes(m: Measurement) -> list[str]:
    """Lines printed under the table: what is missing and why."""
    notes = []
    if m.power.mean_w is None:
        notes.append(f"power unavailable: {m.power.reason}")
    if m.environment.drift:
        notes.append(
            "drift: the last quarter of samples was significantly slower than the first "
            "(thermal throttling or background load?)"
        )
    if m.stopped_by == "max_time" and m.latency.n < m.settings.get("min_iterations", 0):
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
    table.add_column("mean µs", justify="right")
    table.add_column("share", justify="right")
    for row in summary.get("nodes", [])[:top]:
        table.add_row(
            row["name"],
            row["op_type"],
            str(row["calls"]),
            f"{row['mean_us']:.1f}",
            f"{100 * row['share']:.1f}%",
        )
    return table


def facts_table(target: str, facts: dict[str, Any]) -> Table:
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
        if key in facts and facts[key] not in (None, [], {}):
            table.add_row(key, str(facts[key]))
    return table


def console(stderr: bool = False) -> Console:
    """Rich console; when output goes to a file or pipe, wide enough not to wrap names."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, highlight=False, width=width)


def say(message: str) -> None:
    """A plain line on stdout (never wrapped, easy to grep)."""
    print(message, flush=True)
