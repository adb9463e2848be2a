"""Finding every power meter a board has, best first, with reasons for the missing ones."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from ._io import CommandRunner, run_subprocess
from .hwmon_ina2xx import find_hwmon_ina2xx
from .jetson_ina3221 import find_jetson_ina3221
from .jetson_ina3221x import find_jetson_ina3221x
from .meter import SCOPES, PowerMeter
from .nvml import NvmlLoader, find_nvml
from .plugins import find_plugin
from .probe import Found
from .rapl import find_rapl
from .rpi5_pmic import find_rpi5_pmic

#: Execution providers that run a model on the CPU: a GPU's meter (NVML) sees none of it.
CPU_PROVIDERS = frozenset(
    {
        "CPUExecutionProvider",
        "DnnlExecutionProvider",
        "XnnpackExecutionProvider",
        "ACLExecutionProvider",
        "ArmNNExecutionProvider",
    }
)
NVML_ONLY_FOR_CPU = (
    "the only meter is NVML (GPU power) and the model runs on the CPU; name it to use it anyway"
)


@dataclass
class Discovery:
    """Meters in preference order (whole board first, see :data:`SCOPES`) and, for each
    kind of sensor that was looked for and not found or not readable, why. ``root`` is
    where ``/sys`` was read (``--power-root``; not "/" for a simulated board)."""

    meters: List[PowerMeter] = field(default_factory=list)
    reasons: List[str] = field(default_factory=list)
    root: Path = Path("/")

    def select(self, source: Optional[str], provider: Optional[str] = None) -> Optional[PowerMeter]:
        """None: the preferred meter for work on ``provider`` (a GPU's meter is not
        preferred for a model on the CPU). A name: the meter whose source equals it, else
        the first whose source starts with it, whatever the provider. No match: None."""
        if source is None:
            usable = self._for_provider(provider)
            return usable[0] if usable else None
        for meter in self.meters:
            if meter.source == source:
                return meter
        for meter in self.meters:
            if meter.source.startswith(source):
                return meter
        return None

    def unavailable_reason(
        self, source: Optional[str] = None, provider: Optional[str] = None
    ) -> str:
        """One line saying why :meth:`select` (with ``source``, ``provider``) found nothing."""
        if self.meters and source is not None:
            names = "; ".join(m.source for m in self.meters)
            return f"no power meter matches {source!r}; available: {names}"
        if self.meters and not self._for_provider(provider):
            return NVML_ONLY_FOR_CPU
        return "no power sensor found: " + "; ".join(self.reasons or ["nothing looked for"])

    def _for_provider(self, provider: Optional[str]) -> List[PowerMeter]:
        if provider in CPU_PROVIDERS:
            return [m for m in self.meters if m.scope != "gpu"]
        return self.meters


def simulated_note(root: Path) -> str:
    """What a source read under ``root`` says of it: nothing for the board's own "/", else
    that the readings come from a tree that stands in for /sys (a simulated meter)."""
    if os.path.realpath(root) == os.path.realpath(os.sep):
        return ""
    return f"; simulated: power_root {root}"


def discover_meters(
    root: Path = Path("/"),
    run_command: Optional[CommandRunner] = None,
    *,
    nvml_loader: Optional[NvmlLoader] = None,
    plugins: Sequence[str] = (),
) -> Discovery:
    """Look for every kind of sensor this package reads. Never raises for a missing or
    unreadable sensor: that becomes a reason.

    :param root: where ``/sys`` is found (a fake tree in tests and on a simulated board:
        the sources of meters read under it then say so, see :func:`simulated_note`).
    :param run_command: runs ``vcgencmd``; default: subprocess with a 2 s timeout.
    :param nvml_loader: returns the ``pynvml`` module; default: import it.
    :param plugins: modules of plugin readers (see :mod:`device_agent.power.plugins`).
    """
    runner = run_command or run_subprocess
    # (finder, whether it reads files under root); vcgencmd and NVML ask the firmware/driver.
    finders: List[Tuple[Callable[[], Found], bool]] = [
        (lambda: find_hwmon_ina2xx(root), True),
        (lambda: find_jetson_ina3221(root), True),
        (lambda: find_jetson_ina3221x(root), True),
        (lambda: find_rpi5_pmic(runner), False),
        (lambda: find_rapl(root), True),
        (lambda: find_nvml(nvml_loader), False),
    ]
    for module in plugins:
        finders.append((lambda module=module: find_plugin(module, root, runner), True))  # type: ignore[misc]
    note = simulated_note(root)
    meters: List[PowerMeter] = []
    reasons: List[str] = []
    for find, under_root in finders:
        found, why = find()
        if under_root and note:
            for meter in found:
                meter.source += note
        meters.extend(found)
        reasons.extend(why)
    # sorted() is stable: within a scope, the order above (and sysfs order) stays.
    meters = sorted(meters, key=lambda m: SCOPES.index(m.scope))
    return Discovery(meters, reasons, root)
