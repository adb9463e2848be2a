"""What one sampled window measured, and its wire form per inference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional


@dataclass
class PowerResult:
    """Energy over one benchmark window.

    ``mean_w`` and ``energy_j`` are both numbers or both None; when None, ``reason``
    says why (window too short, a read failed, a counter went backwards).
    """

    source: str
    duration_s: float
    n_samples: int
    mean_w: Optional[float]
    energy_j: Optional[float]
    reason: Optional[str]
    #: the sampling interval actually used (the meter's own update interval, at most the
    #: request: see ``integrate.sample_interval_s``)
    interval_s: Optional[float] = None
    #: the meter's own update interval (None where the meter does not say)
    update_interval_s: Optional[float] = None
    #: the shortest window that gives this meter an energy figure (``integrate.min_window_s``)
    min_window_s: Optional[float] = None


def power_summary(
    result: Optional[PowerResult],
    n_inferences: int,
    window_s: float,
    unavailable_reason: str = "",
) -> Dict[str, Any]:
    """The ``power`` dict of a bench reply; ``energy_mj`` is per inference.

    The sampled span (``duration_s``) brackets the timed window but is a little longer: the
    first reading comes just before the window and the last just after it. So energy per
    inference is the mean power over the span times the timed window ``window_s``, divided
    by the inferences run in that window: the same window on both sides of the division.

    Keys are always: mean_w, energy_mj, source, reason, samples, interval_s, duration_s,
    sample_interval_ms (``interval_s`` in ms), update_interval_ms (the meter's own, None
    where it does not say) and min_window_s (the shortest window that gives a figure).
    """
    if result is None:
        return {
            "mean_w": None,
            "energy_mj": None,
            "source": None,
            "reason": unavailable_reason or "power was not measured",
            "samples": None,
            "interval_s": None,
            "duration_s": None,
            "sample_interval_ms": None,
            "update_interval_ms": None,
            "min_window_s": None,
        }
    energy_mj: Optional[float] = None
    reason = result.reason
    if result.mean_w is not None:
        if n_inferences > 0:
            energy_mj = result.mean_w * window_s * 1000.0 / n_inferences
        else:
            reason = "no inference ran in the window, so there is no energy per inference"
    return {
        "mean_w": result.mean_w,
        "energy_mj": energy_mj,
        "source": result.source,
        "reason": reason,
        "samples": result.n_samples,
        "interval_s": result.interval_s,
        "duration_s": result.duration_s,
        "sample_interval_ms": _ms(result.interval_s),
        "update_interval_ms": _ms(result.update_interval_s),
        "min_window_s": result.min_window_s,
    }


def _ms(seconds: Optional[float]) -> Optional[float]:
    return seconds * 1000.0 if seconds is not None else None
