"""Turning (time, reading) samples into energy, or into a reason there is none.

Power readings (W) are integrated with the trapezoid rule, as Zeus and jtop do; energy
counters (J) are differenced, a negative step meaning the counter wrapped. A window
shorter than a few sampling periods (or sensor updates) gives no honest figure at all.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from .meter import KIND_ENERGY, KIND_POWER
from .result import PowerResult

#: (seconds on a monotonic clock, reading)
Sample = Tuple[float, float]

MIN_SAMPLING_PERIODS = 5
MIN_SENSOR_UPDATES = 3


def window_too_short(
    duration_s: float, interval_s: float, update_interval_s: Optional[float]
) -> Optional[str]:
    """Why a window of ``duration_s`` cannot give an honest figure, or None if it can."""
    if duration_s < MIN_SAMPLING_PERIODS * interval_s:
        return (
            f"window {duration_s:.2f} s is shorter than {MIN_SAMPLING_PERIODS} sampling"
            f" periods of {interval_s:.2f} s; raise min_time_s"
        )
    if update_interval_s is not None and duration_s < MIN_SENSOR_UPDATES * update_interval_s:
        return (
            f"window {duration_s:.2f} s is shorter than {MIN_SENSOR_UPDATES} sensor updates"
            f" of {update_interval_s:.2f} s; raise min_time_s"
        )
    return None


def trapezoid_j(samples: Sequence[Sample]) -> float:
    """Energy in J under (t, W) samples."""
    return sum(0.5 * (w0 + w1) * (t1 - t0) for (t0, w0), (t1, w1) in zip(samples, samples[1:]))


def counter_j(samples: Sequence[Sample], wrap_j: Optional[float]) -> Tuple[Optional[float], str]:
    """Energy in J from (t, cumulative J) samples, or None and why."""
    total = 0.0
    for (_, e0), (_, e1) in zip(samples, samples[1:]):
        step = e1 - e0
        if step < 0:
            if wrap_j is None:
                return None, (
                    f"energy counter went backwards ({e0:.3f} J -> {e1:.3f} J)"
                    " and its wrap value is unknown"
                )
            step += wrap_j
            if step < 0:
                return None, f"energy counter went backwards by more than its range {wrap_j} J"
        total += step
    return total, ""


def integrate(
    samples: Sequence[Sample],
    kind: str,
    source: str,
    interval_s: float,
    wrap_j: Optional[float] = None,
    update_interval_s: Optional[float] = None,
) -> PowerResult:
    """The result of one window of samples taken ``interval_s`` apart."""
    n = len(samples)
    duration = samples[-1][0] - samples[0][0] if n >= 2 else 0.0

    def none(reason: str) -> PowerResult:
        return PowerResult(source, duration, n, None, None, reason, interval_s)

    if n < 2:
        return none(f"only {n} sample(s): a window needs at least 2")
    if duration <= 0:
        return none("the samples span no time")
    too_short = window_too_short(duration, interval_s, update_interval_s)
    if too_short is not None:
        return none(too_short)
    if kind == KIND_POWER:
        energy = trapezoid_j(samples)
    elif kind == KIND_ENERGY:
        counted, why = counter_j(samples, wrap_j)
        if counted is None:
            return none(why)
        energy = counted
    else:
        raise ValueError(f"unknown meter kind {kind!r}")
    return PowerResult(source, duration, n, energy / duration, energy, None, interval_s)
