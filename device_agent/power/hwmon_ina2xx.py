"""External INA2xx power monitors through Linux hwmon (how a Pi 4 or an x86 box gets metered).

Format, from the kernel's Documentation/hwmon/ina2xx.rst and ina238.rst: the hwmon
directory's ``name`` is the chip prefix, ``power1_input`` is power in µW and
``update_interval`` (ina226 and later only) the conversion period in ms.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from ._io import read_int, read_text, subdirs, under
from .errors import PowerReadError
from .meter import KIND_POWER, PowerMeter

#: Prefixes documented with ``power1_input`` in µW: the ina2xx driver (ina2xx.rst,
#: including ina234/ina260/sy24655 in newer kernels) and the ina238 driver (ina238.rst).
INA2XX_NAMES = frozenset(
    {"ina219", "ina220", "ina226", "ina230", "ina231", "ina234", "ina260", "sy24655"}
    | {"ina228", "ina237", "ina238"}
)


class HwmonIna2xxMeter(PowerMeter):
    """``power1_input`` of one INA2xx; it measures whatever supply it was wired into."""

    def __init__(self, directory: Path, chip: str, update_interval_s: Optional[float]) -> None:
        super().__init__(
            source=f"hwmon:{chip} ({directory.name}) power1_input, board supply (as wired)",
            kind=KIND_POWER,
            scope="board",
            update_interval_s=update_interval_s,
        )
        self.path = directory / "power1_input"

    def read(self) -> float:
        return read_int(self.path) / 1e6  # µW -> W


def _update_interval_s(directory: Path) -> Optional[float]:
    path = directory / "update_interval"
    if not path.exists():
        return None  # ina219/ina220 do not expose it
    try:
        ms = read_int(path)
    except PowerReadError:
        return None
    return ms / 1000.0 if ms > 0 else None


def find_hwmon_ina2xx(root: Path) -> Tuple[List[PowerMeter], List[str]]:
    """Every readable INA2xx under /sys/class/hwmon, and why others were left out."""
    base = under(root, "/sys/class/hwmon")
    meters: List[PowerMeter] = []
    reasons: List[str] = []
    for directory in subdirs(base, r"hwmon\d+"):
        try:
            chip = read_text(directory / "name")
        except PowerReadError:
            continue  # every hwmon device has a name; one without is not ours
        # The iio-hwmon bridge names a device after its device-tree node, e.g. "ina260_u14"
        # on the Kria SOM; its power1_input is µW too (iio_hwmon.c converts mW to µW).
        if chip not in INA2XX_NAMES and chip.split("_")[0] not in INA2XX_NAMES:
            continue
        meter = HwmonIna2xxMeter(directory, chip, _update_interval_s(directory))
        try:
            meter.read()
        except PowerReadError as exc:
            reasons.append(f"hwmon {chip} ({directory.name}): {exc}")
            continue
        meters.append(meter)
    if not meters and not reasons:
        reasons.append("hwmon ina2xx: no INA2xx power monitor under /sys/class/hwmon")
    return meters, reasons
