"""Power from the Linux power_supply class, read on the board inside the agent.

The kernel's power_supply class (include/linux/power_supply.h) reports ``power_now`` in µW
and ``voltage_now`` / ``current_now`` in µV / µA. Boards powered through a PMIC or a USB-PD
controller that registers a power_supply (and laptops on battery) expose it.

Runs on the board: standard library and ``device_agent`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple, Union

from device_agent.power import PowerMeter, PowerReadError, probe, readable


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise PowerReadError(f"cannot read {path}: {exc}", str(path)) from exc


class PowerSupplyMeter(PowerMeter):
    def __init__(self, directory: Path) -> None:
        super().__init__(
            source=f"power_supply:{directory.name} (what this supply delivers)",
            kind="power",
            scope="board",
        )
        self.directory = directory

    def read(self) -> float:
        power = self.directory / "power_now"
        if power.exists():
            return _read_int(power) / 1e6  # µW -> W
        volts = _read_int(self.directory / "voltage_now") / 1e6
        amps = _read_int(self.directory / "current_now") / 1e6
        return abs(volts * amps)  # current is negative while a battery discharges


def discover(root: Path, run_command: object) -> Tuple[List[PowerMeter], List[str]]:
    base = root / "sys/class/power_supply"
    if not base.is_dir():
        return [], [f"power_supply: no {base}"]
    supplies = sorted(p for p in base.iterdir() if p.is_dir())
    # the agent's own loop: a meter or a reason per supply, a reason when there are none
    return probe(supplies, _open, f"power_supply: {base} is empty")


def _open(directory: Path) -> Union[PowerMeter, str]:
    return readable(PowerSupplyMeter(directory), f"power_supply {directory.name}")
