"""A warm start on another board: a latency table (and its fitted correction) measured on one
board predicts a second board after a few whole-model measurements there (HELP and
MAPLE-Edge adapt with about ten).

The second board's predictor predicts the *first board's* prediction of a candidate (its
table's sum, through the first board's correction where it has one), calibrated by a scale
or a line fitted on the second board's own measurements (:mod:`fit`'s consensus fits: a
measurement in a passing speed state does not pull the line). No one-op model is measured
on the second board; a candidate whose ops the first board's table lacks is a TableError,
as on the first.
"""

from __future__ import annotations

import numpy as np

from ..space import Candidate
from .fit import FEATURES, choose
from .predictor import Prediction, Predictor

#: the calibrations tried (the per-kind one needs ten measurements of many kinds)
CALIBRATIONS = ("scale", "affine")


class TransferredPredictor(Predictor):
    """Predicts board B from ``source``, the predictor of board A (its table, and its
    correction frozen as it is now), calibrated on B's measurements (:meth:`observe`).

    ``table`` is A's; :attr:`fit` maps A's prediction to B's latency. Energy is not
    transferred (another board's meter is another meter): predictions carry none."""

    def __init__(self, source: Predictor) -> None:
        super().__init__(source.table)
        self.source = source

    def source_ms(self, candidate: Candidate) -> float:
        """Board A's prediction of ``candidate`` (its correction of its table's sum)."""
        return self.source.predict(candidate).latency_ms

    def features(self, candidate: Candidate) -> np.ndarray:
        """A's prediction as the whole prior (the overhead column), nothing per kind: the
        calibration is a scale or a line through it."""
        f = np.zeros(len(FEATURES))
        f[0] = self.source_ms(candidate)
        return f

    def energy_features(self, candidate: Candidate) -> np.ndarray | None:
        return None

    def sizes(self, candidate: Candidate) -> np.ndarray:
        return np.zeros(0)  # no learned correction of the calibration

    def predict(self, candidate: Candidate) -> Prediction:
        p = super().predict(candidate)
        return Prediction(p.latency_ms, None, p.prior_ms, None, f"transfer {p.model}")

    def refit(self) -> None:
        obs = self.observations
        if not obs:
            return
        self.fit, self.tried = choose(
            np.asarray([o.features for o in obs]),
            np.asarray([o.measured_ms for o in obs]),
            models=("table", *CALIBRATIONS),
        )

    def describe(self) -> str:
        return f"latency: {self.fit.describe('ms').replace('table', 'first board')}"
