"""Which of evolution's children are likely over the latency budget, guessed from the study.

Over-budget trials cost a measurement each and add nothing to the front. Latency on one
board grows about as a power of a candidate's FLOPs, so ``log latency = a + b log FLOPs`` is
fitted by least squares to the trials measured so far (their FLOPs computed, their latency
and budget as the study was told them: nothing more is measured, and no latency table or
predictor is used). A child is *likely over* when its guessed latency exceeds the budget by
more than twice the fit's own spread and by at least :data:`MARGIN`: an uncertain guess
turns nothing away, and a guess never replaces a measurement (the child that is proposed
is measured; this only picks which child that is).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: trials measured before the fit is used (fewer: no child is turned away)
MIN_POINTS = 4
#: the least log-excess over the budget that counts as likely over (~10%)
MARGIN = 0.10


@dataclass(frozen=True)
class LatencyFit:
    """``log latency = intercept + slope * log FLOPs``, its residuals' spread, the budget."""

    intercept: float
    slope: float
    spread: float  #: the residuals' standard deviation, in log latency
    log_budget: float

    @classmethod
    def of(cls, points: Sequence[tuple[float, float, float]]) -> LatencyFit | None:
        """From (FLOPs, measured latency, budget) of each measured trial; None with fewer
        than :data:`MIN_POINTS` usable ones, or FLOPs all alike."""
        usable = [
            (f, lat, b)
            for f, lat, b in points
            if all(math.isfinite(v) and v > 0 for v in (f, lat, b))
        ]
        if len(usable) < MIN_POINTS:
            return None
        x = np.log([f for f, _, _ in usable])
        y = np.log([lat for _, lat, _ in usable])
        if float(np.ptp(x)) == 0.0:
            return None
        slope, intercept = np.polyfit(x, y, 1)
        spread = float(np.std(y - (intercept + slope * x), ddof=2 if len(usable) > 2 else 0))
        budget = statistics.median(b for _, _, b in usable)
        return cls(float(intercept), float(slope), spread, math.log(budget))

    def log_excess(self, flops: float) -> float:
        """The guessed log latency of ``flops`` over the log budget (> 0: over it)."""
        return self.intercept + self.slope * math.log(max(flops, 1.0)) - self.log_budget

    def likely_over(self, flops: float) -> bool:
        return self.log_excess(flops) > max(2.0 * self.spread, MARGIN)
