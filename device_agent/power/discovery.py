"""Finding every power meter a board has, best first, with reasons for the missing ones."""

from __future__ import annotations

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
from .rapl import find_rapl
from .rpi5_pmic import find_rpi5_pmic

Found = Tuple[List[PowerMeter], List[str]]


@dataclass
class Discovery:
    """Meters in preference order (whole board first, see :data:`SCOPES`) and, for each
    kind of sensor that was looked for and not found or not readable, why."""

    meters: List[PowerMeter] = field(default_factory=list)
    reasons: List[str] = field(default_factory=list)

    def select(self, source: Optional[str]) -> Optional[PowerMeter]:
        """None: the preferred meter. A name: the meter whose source equals it, else the
        first whose source starts with it. No match: None."""
        if source is None:
            return self.meters[0] if self.meters else None
        for meter in self.meters:
            if meter.source == source:
                return meter
        for meter in self.meters:
            if meter.source.startswith(source):
                return meter
        return None

    def unavailable_reason(self, source: Optional[str] = None) -> str:
        """One line saying why :meth:`select` (with ``source``) found nothing."""
        if self.meters and source is not None:
            names = "; ".join(m.source for m in self.meters)
            return f"no power meter matches {source!r}; available: {names}"
        return "no power sensor found: " + "; ".join(self.reasons or ["nothing looked for"])


def discover_meters(
    root: Path = Path("/"),
    run_command: Optional[CommandRunner] = None,
    *,
    nvml_loader: Optional[NvmlLoader] = None,
    plugins: Sequence[str] = (),
) -> Discovery:
    """Look for every kind of sensor this package reads. Never raises for a missing or
    unreadable sensor: that becomes a reason.

    :param root: where ``/sys`` is found (a fake tree in tests).
    :param run_command: runs ``vcgencmd``; default: subprocess with a 2 s timeout.
    :param nvml_loader: returns the ``pynvml`` module; default: import it.
    :param plugins: modules of plugin readers (see :mod:`device_agent.power.plugins`).
    """
    runner = run_command or run_subprocess
    finders: List[Callable[[], Found]] = [
        lambda: find_hwmon_ina2xx(root),
        lambda: find_jetson_ina3221(root),
        lambda: find_jetson_ina3221x(root),
        lambda: find_rpi5_pmic(runner),
        lambda: find_rapl(root),
        lambda: find_nvml(nvml_loader),
    ]
    for module in plugins:
        finders.append(lambda module=module: find_plugin(module, root, runner))  # type: ignore[misc]
    meters: List[PowerMeter] = []
    reasons: List[str] = []
    for find in finders:
        found, why = find()
        meters.extend(found)
        reasons.extend(why)
    # sorted() is stable: within a scope, the order above (and sysfs order) stays.
    meters = sorted(meters, key=lambda m: SCOPES.index(m.scope))
    return Discovery(meters, reasons)
