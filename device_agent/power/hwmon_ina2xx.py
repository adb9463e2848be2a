"""External INA2xx power monitors through Linux hwmon (how a Pi 4 or an x86 box gets metered).

Format, from the kernel's Documentation/hwmon/ina2xx.rst and ina238.rst: the hwmon
directory's ``name`` is the chip prefix, ``power1_input`` is power in µW and
``update_interval`` (ina226 and later only) the conversion period in ms.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ._io import hwmon_update_interval_s, read_int, read_text, subdirs, under
from .errors import PowerReadError
from .meter import KIND_POWER, PowerMeter
from .probe import Found, Opened, probe, readable

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


def find_hwmon_ina2xx(root: Path) -> Found:
    """Every readable INA2xx under /sys/class/hwmon, and why others were left out."""
    return probe(
        subdirs(under(root, "/sys/class/hwmon"), r"hwmon\d+"),
        _open,
        "hwmon ina2xx: no INA2xx power monitor under /sys/class/hwmon",
    )


def _open(directory: Path) -> Opened:
    try:
        chip = read_text(directory / "name")
    except PowerReadError:
        return None  # every hwmon device has a name; one without is not ours
    # The iio-hwmon bridge names a device after its device-tree node, e.g. "ina260_u14"
    # on the Kria SOM; its power1_input is µW too (iio_hwmon.c converts mW to µW).
    if chip not in INA2XX_NAMES and chip.split("_")[0] not in INA2XX_NAMES:
        return None
    meter = HwmonIna2xxMeter(directory, chip, hwmon_update_interval_s(directory))
    return readable(meter, f"hwmon {chip} ({directory.name})")
