"""Turning (time, reading) samples into energy, or into a reason there is none.

Power readings (W) are integrated with the trapezoid rule, as Zeus and jtop do; energy
counters (J) are differenced, a negative step meaning the counter wrapped. A window
shorter than a few sampling periods (or sensor updates) gives no honest figure at all: the
sampler polls a meter at its own update interval where it is known, so that window is short.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from .meter import KIND_ENERGY, KIND_POWER
from .result import PowerResult

#: (seconds on a monotonic clock, reading)
Sample = Tuple[float, float]

MIN_SAMPLING_PERIODS = 5
MIN_SENSOR_UPDATES = 3
#: The fastest the sampler polls, however fast a meter updates: a read costs the board CPU.
MIN_POLL_S = 0.001


def sample_interval_s(requested_s: float, update_interval_s: Optional[float]) -> float:
    """The period to poll a meter at: its own update interval where that is known (polling
    faster repeats a value, slower misses some), but never slower than ``requested_s`` and
    never faster than :data:`MIN_POLL_S`; ``requested_s`` where the meter does not say."""
    if update_interval_s is None:
        return requested_s
    return max(MIN_POLL_S, min(update_interval_s, requested_s))


def min_window_s(interval_s: float, update_interval_s: Optional[float]) -> float:
    """The shortest window that gives an honest figure: :data:`MIN_SAMPLING_PERIODS`
    polls and :data:`MIN_SENSOR_UPDATES` updates of the meter (where its period is known)."""
    updates = MIN_SENSOR_UPDATES * update_interval_s if update_interval_s is not None else 0.0
    return max(MIN_SAMPLING_PERIODS * interval_s, updates)


def window_too_short(
    duration_s: float, interval_s: float, update_interval_s: Optional[float]
) -> Optional[str]:
    """Why a window of ``duration_s`` cannot give an honest figure, or None if it can."""
    needed = min_window_s(interval_s, update_interval_s)
    if duration_s >= needed:
        return None
    if needed == MIN_SAMPLING_PERIODS * interval_s:
        what = f"{MIN_SAMPLING_PERIODS} sampling periods of {interval_s:.3g} s"
    else:
        what = f"{MIN_SENSOR_UPDATES} sensor updates of {update_interval_s:.3g} s"
    return (
        f"window {duration_s:.3g} s is shorter than the {needed:.3g} s this meter needs"
        f" ({what}); raise min_time_s"
    )


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


def span_s(samples: Sequence[Sample]) -> float:
    """The time the samples span (0 for fewer than two)."""
    return samples[-1][0] - samples[0][0] if len(samples) >= 2 else 0.0


def window_result(
    samples: Sequence[Sample],
    source: str,
    interval_s: float,
    update_interval_s: Optional[float],
    energy_j: Optional[float],
    reason: Optional[str],
) -> PowerResult:
    """The result of a window of ``samples``: ``energy_j`` over it, or None and ``reason``."""
    duration = span_s(samples)
    return PowerResult(
        source=source,
        duration_s=duration,
        n_samples=len(samples),
        mean_w=energy_j / duration if energy_j is not None else None,
        energy_j=energy_j,
        reason=reason,
        interval_s=interval_s,
        update_interval_s=update_interval_s,
        min_window_s=min_window_s(interval_s, update_interval_s),
    )


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
    duration = span_s(samples)

    def result(energy_j: Optional[float], reason: Optional[str]) -> PowerResult:
        return window_result(samples, source, interval_s, update_interval_s, energy_j, reason)

    def none(reason: str) -> PowerResult:
        return result(None, reason)

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
    return result(energy, None)
