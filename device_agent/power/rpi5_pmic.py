"""Raspberry Pi 5: the PMIC's per-rail ADC, read with ``vcgencmd pmic_read_adc``.

Format, from recorded output (tests/data/power/rpi5_pmic_read_adc.txt, captured in Zeus
``tests/device/machine/test_rpi.py``; Zeus ``zeus/device/machine/rpi.py``): one line per
ADC channel, ``<RAIL>_A current(N)=<amps>A`` or ``<RAIL>_V volt(N)=<volts>V``. Channel
numbers of a rail's current and voltage differ, so pairs are matched by rail name.
EXT5V and BATT have a voltage only and give no power. The PMIC regulates the SoC-side
rails; it does not see the 5 V side (USB ports, HATs, NVMe), so the sum is not the
board's draw, and the source name says so. One read costs about 23 ms of firmware time
(Zeus), which is why polling at 10 Hz, not faster, is sensible.
"""

from __future__ import annotations

import re
from typing import Dict, FrozenSet, List, Tuple

from ._io import CommandRunner
from .errors import CommandError, CommandNotFoundError, PowerReadError
from .meter import KIND_POWER, PowerMeter

COMMAND = ("vcgencmd", "pmic_read_adc")

_LINE = re.compile(
    r"^\s*(?P<rail>\S+)_(?P<kind>[AV])\s+(?:current|volt)\(\d+\)="
    r"(?P<value>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)(?P<unit>[AV])\s*$"
)


def parse_pmic_adc(text: str) -> Dict[str, float]:
    """Rail name -> watts, for every rail that has both a current and a voltage line."""
    amps: Dict[str, float] = {}
    volts: Dict[str, float] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None or match.group("kind") != match.group("unit"):
            continue
        table = amps if match.group("kind") == "A" else volts
        table[match.group("rail")] = float(match.group("value"))
    return {rail: amps[rail] * volts[rail] for rail in sorted(amps) if rail in volts}


class Rpi5PmicMeter(PowerMeter):
    """Sum of V·I over the PMIC rails found at discovery."""

    def __init__(self, run_command: CommandRunner, rails: FrozenSet[str]) -> None:
        super().__init__(
            source=(
                f"rpi5-pmic: sum of {len(rails)} PMIC rails"
                " (excludes the 5 V side: USB, HATs, NVMe)"
            ),
            kind=KIND_POWER,
            scope="pmic-rails",
        )
        self.rails = rails
        self._run = run_command

    def read(self) -> float:
        try:
            text = self._run(COMMAND)
        except CommandError as exc:
            raise PowerReadError(str(exc), " ".join(COMMAND)) from exc
        rails = parse_pmic_adc(text)
        if frozenset(rails) != self.rails:
            # A different set of rails would make the sum a different quantity mid-window.
            raise PowerReadError(
                f"pmic_read_adc gave {len(rails)} rails, expected {len(self.rails)}",
                " ".join(COMMAND),
            )
        return sum(rails.values())


def find_rpi5_pmic(run_command: CommandRunner) -> Tuple[List[PowerMeter], List[str]]:
    """The PMIC meter when ``vcgencmd pmic_read_adc`` answers with rail pairs."""
    try:
        text = run_command(COMMAND)
    except (CommandNotFoundError, FileNotFoundError):
        return [], ["vcgencmd: not found"]
    except CommandError as exc:
        return [], [f"vcgencmd pmic_read_adc: {exc}"]
    rails = parse_pmic_adc(text)
    if not rails:
        # Firmware without the command answers with an `error_msg=` line (Zeus rpi.py).
        shown = text.strip().splitlines()[0][:80] if text.strip() else "empty output"
        return [], [f"vcgencmd pmic_read_adc: no current/voltage rail pairs ({shown})"]
    return [Rpi5PmicMeter(run_command, frozenset(rails))], []
