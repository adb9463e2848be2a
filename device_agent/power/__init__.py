"""Power and energy measured on the board while a benchmark runs.

``discover_meters()`` finds the board's sensors (external INA2xx, Jetson INA3221, the
Raspberry Pi 5 PMIC, RAPL, NVML); a ``PowerSampler`` polls one during the timed loop and
integrates it into a ``PowerResult``; ``power_summary()`` turns that into the reply's dict.
Every finder (and a plugin's ``discover``) runs the one loop of ``probe()``.
"""

from __future__ import annotations

from .discovery import Discovery, discover_meters
from .errors import CommandError, CommandNotFoundError, PowerError, PowerReadError
from .integrate import Sample, integrate, min_window_s, sample_interval_s
from .meter import KIND_ENERGY, KIND_POWER, SCOPES, PowerMeter
from .probe import Found, Opened, probe, readable
from .result import PowerResult, power_summary
from .sampler import PowerSampler

__all__ = [
    "KIND_ENERGY",
    "KIND_POWER",
    "SCOPES",
    "CommandError",
    "CommandNotFoundError",
    "Discovery",
    "Found",
    "Opened",
    "PowerError",
    "PowerMeter",
    "PowerReadError",
    "PowerResult",
    "PowerSampler",
    "Sample",
    "discover_meters",
    "integrate",
    "min_window_s",
    "power_summary",
    "probe",
    "readable",
    "sample_interval_s",
]
