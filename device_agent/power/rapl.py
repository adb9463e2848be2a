"""CPU package energy from Intel/AMD RAPL through the powercap framework.

Format, from the kernel's Documentation/power/powercap/powercap.rst (and Zeus
``zeus/device/cpu/rapl.py``): each top-level zone ``/sys/class/powercap/intel-rapl:N`` has
``name`` ("package-N"; "psys" is a platform zone), ``energy_uj`` (cumulative µJ) and
``max_energy_range_uj`` (the counter's range: it wraps to 0 there). Since Linux 5.10
``energy_uj`` is readable by root only (CVE-2020-8694 Intel, CVE-2020-12912 AMD).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ._io import read_int, read_text, subdirs, under
from .errors import PowerReadError
from .meter import KIND_ENERGY, PowerMeter
from .probe import Found, Opened, probe, readable

ROOT_ONLY = "root-only since Linux 5.10, CVE-2020-8694 / CVE-2020-12912"

#: The package energy counter's update period: "updated every ~1 msec" (Intel SDM vol. 3B,
#: MSR_PKG_ENERGY_STATUS); AMD's counter updates every 1 ms too (kernel hwmon/amd_energy).
RAPL_UPDATE_S = 0.001


class RaplPackageMeter(PowerMeter):
    """The energy counter of one CPU package: the CPU, not the board around it."""

    def __init__(self, zone: Path, name: str, wrap_j: Optional[float]) -> None:
        super().__init__(
            source=f"rapl:{name} (CPU package only, not whole board)",
            kind=KIND_ENERGY,
            scope="cpu-package",
            wrap_j=wrap_j,
            update_interval_s=RAPL_UPDATE_S,
        )
        self.path = zone / "energy_uj"

    def read(self) -> float:
        return read_int(self.path) / 1e6  # µJ -> J


def find_rapl(root: Path) -> Found:
    """One meter per readable package zone (several sockets: several meters; their
    counters wrap independently, so they are not summed into one)."""
    base = under(root, "/sys/class/powercap")
    zones = subdirs(base, r"intel-rapl:\d+")  # top level only; intel-rapl:0:0 are subzones
    if not zones:
        return [], ["rapl: no /sys/class/powercap/intel-rapl:N (no RAPL, or driver not loaded)"]
    return probe(zones, _open, "rapl: no package zone among " + ", ".join(z.name for z in zones))


def _open(zone: Path) -> Opened:
    try:
        name = read_text(zone / "name")
    except PowerReadError as exc:
        return f"rapl: {exc}"
    if not name.startswith("package"):
        return None  # psys and the like cover other things; say nothing we cannot name
    wrap_j: Optional[float]
    try:
        wrap_j = read_int(zone / "max_energy_range_uj") / 1e6
    except PowerReadError:
        wrap_j = None  # still usable: a wrap inside a window is then reported, not guessed
    meter = RaplPackageMeter(zone, name, wrap_j)
    return readable(meter, "rapl", lambda exc: _unreadable(meter.path, exc))


def _unreadable(path: Path, exc: PowerReadError) -> str:
    if isinstance(exc.__cause__, PermissionError):
        return f"{path} not readable ({ROOT_ONLY})"
    detail = getattr(exc.__cause__, "strerror", None) or str(exc)
    return f"{path} not readable: {detail}"
