"""Jetson power rails, JetPack 4 (L4T 32): NVIDIA's own ``ina3221x`` IIO driver.

Format, from energymon ``jetson/ina3221x.c`` and jetson_stats ``jtop/core/power.py``: under
``/sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:deviceN/`` channel K (0..2) has
``rail_name_K`` and ``in_powerK_input`` in mW. A missing ``rail_name_K`` means the
channel is not connected. The driver gives no sensor update period, so none is claimed.
"""

from __future__ import annotations

from pathlib import Path

from ._io import read_int
from .jetson_rails import JetsonDriver, find_rails, jetson_scope, jetson_source
from .meter import KIND_POWER, PowerMeter
from .probe import Found


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


INA3221X = JetsonDriver(
    name="ina3221x",
    title="jetson ina3221x (JetPack 4)",
    below="",
    pattern=r"iio:device\d+",
    channels=(0, 1, 2),
    name_file="rail_name_{0}",
    none_named="no named rail",
    make=JetsonIna3221xMeter,
)


def find_jetson_ina3221x(root: Path) -> Found:
    """Every named, readable rail of every ina3221x device."""
    return find_rails(root, INA3221X)
