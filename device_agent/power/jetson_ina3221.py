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
from typing import List, Optional, Tuple

from ._io import read_int, read_text, subdirs, under
from .errors import PowerReadError
from .meter import KIND_POWER, PowerMeter

#: Rails that carry the module's whole input (energymon's defaults, jtop ``total_power``).
#: On TX1/TX2 dev kits the carrier board has its own rail (VDD_MUX) beside VDD_IN.
JETSON_INPUT_RAILS = frozenset({"VDD_IN", "POM_5V_IN"})

BUS_ADDR = r"\d+-[0-9a-fA-F]{4}"


def jetson_source(rail: str, where: str) -> str:
    """Source names shared by both Jetson drivers, so ``--power-meter jetson-ina3221:VDD_IN``
    selects the same rail on JetPack 4 and 5."""
    if rail in JETSON_INPUT_RAILS:
        return f"jetson-ina3221:{rail} (module power input; {where})"
    return f"jetson-ina3221:{rail} (one rail, not the whole board; {where})"


def jetson_scope(rail: str) -> str:
    return "board" if rail in JETSON_INPUT_RAILS else "rail"


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


def _update_interval_s(hwmon: Path) -> Optional[float]:
    try:
        ms = read_int(hwmon / "update_interval")
    except PowerReadError:
        return None
    return ms / 1000.0 if ms > 0 else None


def find_jetson_ina3221(root: Path) -> Tuple[List[PowerMeter], List[str]]:
    """Every labelled, readable channel of every mainline INA3221."""
    base = under(root, "/sys/bus/i2c/drivers/ina3221")
    meters: List[PowerMeter] = []
    reasons: List[str] = []
    if not base.is_dir():
        return meters, ["jetson ina3221 (JetPack 5+): no /sys/bus/i2c/drivers/ina3221"]
    for device in subdirs(base, BUS_ADDR):
        for hwmon in subdirs(device / "hwmon", r"hwmon\d+"):
            interval = _update_interval_s(hwmon)
            for channel in (1, 2, 3):
                label_path = hwmon / f"in{channel}_label"
                if not label_path.exists():
                    continue  # no label: nothing says what the channel measures
                try:
                    rail = read_text(label_path)
                except PowerReadError as exc:
                    reasons.append(f"jetson ina3221 {device.name}: {exc}")
                    continue
                if not rail or rail == "NC":
                    continue
                meter = JetsonIna3221Meter(hwmon, channel, rail, interval)
                try:
                    meter.read()
                except PowerReadError as exc:
                    reasons.append(f"jetson ina3221 {rail}: {exc}")
                    continue
                meters.append(meter)
    if not meters and not reasons:
        reasons.append("jetson ina3221 (JetPack 5+): driver present but no labelled channel")
    return meters, reasons
