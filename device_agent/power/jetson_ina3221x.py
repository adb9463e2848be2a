"""Jetson power rails, JetPack 4 (L4T 32): NVIDIA's own ``ina3221x`` IIO driver.

Format, from energymon ``jetson/ina3221x.c`` and jetson_stats ``jtop/core/power.py``: under
``/sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:deviceN/`` channel K (0..2) has
``rail_name_K`` and ``in_powerK_input`` in mW. A missing ``rail_name_K`` means the
channel is not connected. The driver gives no sensor update period, so none is claimed.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from ._io import read_int, read_text, subdirs, under
from .errors import PowerReadError
from .jetson_ina3221 import BUS_ADDR, jetson_scope, jetson_source
from .meter import KIND_POWER, PowerMeter


class JetsonIna3221xMeter(PowerMeter):
    """``in_powerK_input`` of one named rail."""

    def __init__(self, iio: Path, channel: int, rail: str) -> None:
        where = f"ina3221x {iio.parent.name} {iio.name} in_power{channel}"
        super().__init__(
            source=jetson_source(rail, where), kind=KIND_POWER, scope=jetson_scope(rail)
        )
        self.rail = rail
        self.path = iio / f"in_power{channel}_input"

    def read(self) -> float:
        return read_int(self.path) / 1000.0  # mW -> W


def find_jetson_ina3221x(root: Path) -> Tuple[List[PowerMeter], List[str]]:
    """Every named, readable rail of every ina3221x device."""
    base = under(root, "/sys/bus/i2c/drivers/ina3221x")
    meters: List[PowerMeter] = []
    reasons: List[str] = []
    if not base.is_dir():
        return meters, ["jetson ina3221x (JetPack 4): no /sys/bus/i2c/drivers/ina3221x"]
    for device in subdirs(base, BUS_ADDR):
        for iio in subdirs(device, r"iio:device\d+"):
            for channel in (0, 1, 2):
                name_path = iio / f"rail_name_{channel}"
                if not name_path.exists():
                    continue
                try:
                    rail = read_text(name_path)
                except PowerReadError as exc:
                    reasons.append(f"jetson ina3221x {device.name}: {exc}")
                    continue
                meter = JetsonIna3221xMeter(iio, channel, rail)
                try:
                    meter.read()
                except PowerReadError as exc:
                    reasons.append(f"jetson ina3221x {rail}: {exc}")
                    continue
                meters.append(meter)
    if not meters and not reasons:
        reasons.append("jetson ina3221x (JetPack 4): driver present but no named rail")
    return meters, reasons
