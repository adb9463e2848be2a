"""Jetson power rails, JetPack 5 and later: the mainline ``ina3221`` hwmon driver.

Format, from the kernel's Documentation/hwmon/ina3221.rst, energymon ``jetson/ina3221.c``
and jetson_stats ``jtop/core/power.py``: under
``/sys/bus/i2c/drivers/ina3221/<bus>-<addr>/hwmon/hwmonN/`` channels 1..3 have
``inK_label``, ``inK_input`` (bus voltage, mV) and ``currK_input`` (mA). There is no power
file, so P = V·I. in4..in6 are shunt voltages in µV, in7 is the sum of shunt voltages and
curr4 the sum of currents: none of them pairs into a rail power, so only 1..3 are read.
Unconnected channels are labelled "NC" (Orin).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ._io import hwmon_update_interval_s, read_int
from .jetson_rails import JetsonDriver, find_rails, jetson_scope, jetson_source
from .meter import KIND_POWER, PowerMeter
from .probe import Found


class JetsonIna3221Meter(PowerMeter):
    """One labelled channel: bus voltage times current."""

    def __init__(
        self, hwmon: Path, channel: int, rail: str, update_interval_s: Optional[float]
    ) -> None:
        where = f"ina3221 {hwmon.parent.parent.name} {hwmon.name} in{channel}"
        super().__init__(
            source=jetson_source(rail, where),
            kind=KIND_POWER,
            scope=jetson_scope(rail),
            update_interval_s=update_interval_s,
        )
        self.rail = rail
        self.volt_path = hwmon / f"in{channel}_input"
        self.curr_path = hwmon / f"curr{channel}_input"

    def read(self) -> float:
        millivolts = read_int(self.volt_path)
        milliamps = read_int(self.curr_path)
        return millivolts * milliamps / 1e6  # mV * mA = µW


def _meter(hwmon: Path, channel: int, rail: str) -> PowerMeter:
    # update_interval: the conversion time × channels × averaging (ina3221.rst), in ms
    return JetsonIna3221Meter(hwmon, channel, rail, hwmon_update_interval_s(hwmon))


INA3221 = JetsonDriver(
    name="ina3221",
    title="jetson ina3221 (JetPack 5+)",
    below="hwmon",
    pattern=r"hwmon\d+",
    channels=(1, 2, 3),  # in4..in7 and curr4 are shunt voltages and sums: no rail power
    name_file="in{0}_label",
    none_named="no labelled channel",
    make=_meter,
    not_connected=frozenset({"", "NC"}),
)


def find_jetson_ina3221(root: Path) -> Found:
    """Every labelled, readable channel of every mainline INA3221."""
    return find_rails(root, INA3221)
