"""What changes between runs: governor, clocks, temperatures."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ._files import cpu_dirs, read_int, read_text


def _per_cpu_mhz(dirs: List[Tuple[int, Path]], name: str) -> Optional[List[Optional[float]]]:
    values = [read_int(d / "cpufreq" / name) for _, d in dirs]
    if all(v is None for v in values):
        return None
    return [None if v is None else v / 1000 for v in values]


def _temperatures(root: Path) -> Dict[str, Optional[float]]:
    base = root / "sys/class/thermal"
    try:
        zones = [p for p in base.iterdir() if re.fullmatch(r"thermal_zone\d+", p.name)]
    except OSError:
        return {}
    out: Dict[str, Optional[float]] = {}
    for zone in sorted(zones, key=lambda p: int(p.name[len("thermal_zone") :])):
        kind = (read_text(zone / "type") or "").strip() or zone.name
        if kind in out:  # e.g. two "acpitz": the second is "acpitz#<zone number>"
            kind = f"{kind}#{zone.name[len('thermal_zone') :]}"
        milli = read_int(zone / "temp")
        out[kind] = None if milli is None else milli / 1000
    return out


def dynamic_state(root: Path = Path("/")) -> Dict[str, Any]:
    """A snapshot of what can change between runs.

    Keys: governor (str when all CPUs agree, else {"cpuN": governor}; None without cpufreq),
    cpu_freq_mhz and cpu_freq_max_mhz (one entry per cpuN in N order, None where unreadable;
    the whole list None without cpufreq), temperature_c ({zone type: °C}), throttled (None:
    reserved for a firmware flag such as ``vcgencmd get_throttled``, not read here).
    """
    dirs = cpu_dirs(root)
    governors: Dict[str, str] = {}
    for n, d in dirs:
        gov = read_text(d / "cpufreq/scaling_governor")
        if gov is not None and gov.strip():
            governors[f"cpu{n}"] = gov.strip()
    governor: Any = None
    if governors:
        distinct = set(governors.values())
        governor = distinct.pop() if len(distinct) == 1 else governors
    return {
        "governor": governor,
        "cpu_freq_mhz": _per_cpu_mhz(dirs, "scaling_cur_freq"),
        "cpu_freq_max_mhz": _per_cpu_mhz(dirs, "scaling_max_freq"),
        "temperature_c": _temperatures(root),
        "throttled": None,
    }


def throttle_check(
    start: Dict[str, Any], end: Dict[str, Any], drop_fraction: float = 0.1
) -> Optional[bool]:
    """Whether the CPU clocks fell during a measurement, from two `dynamic_state` snapshots.

    True when, for any CPU, ``cpu_freq_mhz`` at ``end`` is more than ``drop_fraction`` below
    its ``start`` value, or ``cpu_freq_max_mhz`` fell that much (a thermal cap lowers the
    policy maximum). None when no CPU has a frequency in both snapshots. Under an
    on-demand governor the current clock follows load: take both snapshots under load.
    """
    known = False
    for key in ("cpu_freq_mhz", "cpu_freq_max_mhz"):
        before, after = start.get(key), end.get(key)
        if not isinstance(before, list) or not isinstance(after, list):
            continue
        for a, b in zip(before, after):
            if a is None or b is None:
                continue
            known = True
            if b < a * (1 - drop_fraction):
                return True
    return False if known else None
