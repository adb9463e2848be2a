"""What the two Jetson INA3221 drivers share: rail names and scopes, and one finder that
walks a driver's devices and channels (each driver module says only how it lays them out).

From energymon ``jetson/`` and jetson_stats ``jtop/core/power.py``: both drivers bind to
I2C devices ``/sys/bus/i2c/drivers/<driver>/<bus>-<addr>/``; the rail a channel measures
is named in a file of its own, and a channel without that name is not connected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, FrozenSet, Tuple

from ._io import read_text, subdirs, under
from .errors import PowerReadError
from .meter import PowerMeter
from .probe import Found, Opened, probe, readable

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


@dataclass(frozen=True)
class JetsonDriver:
    """How one driver lays out its channels; ``make(directory, channel, rail)`` opens one."""

    name: str  #: the driver's directory under /sys/bus/i2c/drivers
    title: str  #: how its reasons begin, e.g. "jetson ina3221 (JetPack 5+)"
    below: str  #: where, in an I2C device, the channel directories are ("" for the device)
    pattern: str  #: the channel directories' names
    channels: Tuple[int, ...]
    name_file: str  #: the file naming channel {0}'s rail, in its channel directory
    none_named: str  #: what the reason says when the driver is bound but no rail is named
    make: Callable[[Path, int, str], PowerMeter]
    not_connected: FrozenSet[str] = frozenset()  #: rail names that mean "not connected"


def find_rails(root: Path, driver: JetsonDriver) -> Found:
    """Every named, readable channel of every device ``driver`` is bound to."""
    base = under(root, f"/sys/bus/i2c/drivers/{driver.name}")
    if not base.is_dir():
        return [], [f"{driver.title}: no /sys/bus/i2c/drivers/{driver.name}"]
    channels = (
        (device, directory, channel)
        for device in subdirs(base, BUS_ADDR)
        for directory in subdirs(device / driver.below, driver.pattern)
        for channel in driver.channels
    )

    def open_channel(candidate: Tuple[Path, Path, int]) -> Opened:
        device, directory, channel = candidate
        name_path = directory / driver.name_file.format(channel)
        if not name_path.exists():
            return None  # no name: nothing says what the channel measures
        try:
            rail = read_text(name_path)
        except PowerReadError as exc:
            return f"jetson {driver.name} {device.name}: {exc}"
        if rail in driver.not_connected:
            return None
        return readable(driver.make(directory, channel, rail), f"jetson {driver.name} {rail}")

    return probe(channels, open_channel, f"{driver.title}: driver present but {driver.none_named}")
