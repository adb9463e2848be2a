"""The latency (and energy) predictor: the table's sum over a candidate's layers, corrected
by a fit on the whole-model measurements the search makes, and its error as it goes.

Each measured candidate is logged with the prediction made *before* its measurement, so
:meth:`Predictor.error` is an out-of-sample error: what the search could have known. The
correction is refitted after each measurement (:func:`fit.choose`: the table alone, a
scale, a line, or per-kind factors, whichever predicts the measurements left out best);
from ``learned.MIN_LEARNED`` measurements on, a learned latency correction (Huber regression or
boosted trees on the ops' sizes, :mod:`learned`) replaces it where its held-out share
within ±10% is higher, and its held-out error is then the skip rule's margin.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..settings import Budgets, MeasuredFigures, Violation
from ..space import Candidate
from .fit import FEATURES, KIND_COLUMNS, MIN_FIT, TABLE, Fit, choose, prior
from .learned import Learned, fit_learned
from .ops import OP_FEATURES, Op, candidate_ops, op_features
from .table import LatencyTable

WITHIN = 0.10  #: the band the error is reported in
MIN_MARGIN = 0.10


@dataclass(frozen=True)
class Prediction:
    """A candidate's predicted latency (and energy, None without a meter), the table's prior
    it came from, and the correction model that made it (``table`` for none)."""

    latency_ms: float
    energy_mj: float | None
    prior_ms: float
    prior_energy_mj: float | None
    model: str
    energy_model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        """Raises ValueError for anything but a prediction's dict."""

        def number(key: str, optional: bool = False) -> Any:
            value = data.get(key)
            if value is None and optional:
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"prediction: {key} must be a number, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"prediction: {key} must be finite and >= 0")
            return float(value)

        model, energy_model = data.get("model"), data.get("energy_model")
        if not isinstance(model, str) or not isinstance(energy_model, (str, type(None))):
            raise ValueError("prediction: model must be a string")
        return cls(
            number("latency_ms"),
            number("energy_mj", True),
            number("prior_ms"),
            number("prior_energy_mj", True),
            model,
            energy_model,
        )


@dataclass(frozen=True)
class PredictorError:
    """Relative errors |predicted - measured| / measured over ``n`` measured candidates."""

    n: int
    within_10: float  #: share (0..1) within ±10%
    median_abs_pct: float
    p90_abs_pct: float
    max_abs_pct: float

    @classmethod
    def of(cls, predicted: Sequence[float], measured: Sequence[float]) -> PredictorError | None:
        if not measured:
            return None
        err = np.abs(np.asarray(predicted) - np.asarray(measured)) / np.asarray(measured)
        return cls(
            n=len(err),
            within_10=float(np.mean(err <= WITHIN)),
            median_abs_pct=100 * float(np.median(err)),
            p90_abs_pct=100 * float(np.percentile(err, 90)),
            max_abs_pct=100 * float(np.max(err)),
        )

    def describe(self) -> str:
        """``92% within ±10%, median error 4.1% (23 measured)``"""
        return (
            f"{100 * self.within_10:.0f}% within ±10%, median error "
            f"{self.median_abs_pct:.1f}% ({self.n} measured)"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Observation:
    """One measured candidate: what was predicted before, what was measured."""

    hash: str
    candidate: str
    predicted_ms: float
    measured_ms: float
    prior_ms: float
    model: str
    predicted_energy_mj: float | None
    measured_energy_mj: float | None
    prior_energy_mj: float | None
    features: tuple[float, ...]  #: FEATURES, latency
    energy_features: tuple[float, ...] | None
    #: the candidate's ops' OP_FEATURES summed (MACs, params, elements moved, nodes)
    sizes: tuple[float, ...] = ()

    @property
    def error(self) -> float:
        """Signed relative error of the prediction, (predicted - measured) / measured."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _kind_sums(ops: Iterable[Op], per_op: Any, overhead: float) -> tuple[float, ...]:
    """The FEATURES of a candidate's ops: overhead, time per kind (a kind without its own
    column in ``other``), number of layers."""
    sums = dict.fromkeys(FEATURES, 0.0)
    sums["overhead"] = overhead
    for op in ops:
        if op.kind != "overhead":
            sums[op.kind if op.kind in KIND_COLUMNS else "other"] += per_op(op)
            sums["layers"] += 1
    return tuple(sums.values())


class Predictor:
    """Predicts from ``table`` (filled for the candidate by the caller: ``table.ensure``)."""

    MIN_OBSERVATIONS = 5  #: measurements before margin() says anything

    def __init__(self, table: LatencyTable) -> None:
        self.table = table
        self.observations: list[Observation] = []
        self.fit: Fit = TABLE
        self.energy_fit: Fit | None = None
        #: what the energy correction maps: the table's energies (``energy``), or its
        #: times (``time``: energy = power x time, the power fitted on the measurements)
        self.energy_basis = "energy"
        #: leave-one-out share within ±10% of each latency model tried at the last refit
        #: (a learned one: its K-fold held-out share)
        self.tried: dict[str, float] = {}
        #: the learned latency correction in use, when it predicts better than self.fit
        self.learned: Learned | None = None
        #: every learned model fitted at the last refit, by name (slow ones are refitted
        #: every few measurements only: learned.REFIT_EVERY)
        self.learned_fits: dict[str, Learned] = {}

    # -- features -------------------------------------------------------------------------

    def features(self, candidate: Candidate) -> np.ndarray:
        ops = candidate_ops(candidate)
        return np.asarray(_kind_sums(ops, self.table.layer_ms, self.table.overhead_ms()))

    def sizes(self, candidate: Candidate) -> np.ndarray:
        """The candidate's ops' OP_FEATURES, summed."""
        total = np.zeros(len(OP_FEATURES))
        for op in candidate_ops(candidate):
            total += op_features(op)
        return total

    def energy_features(self, candidate: Candidate) -> np.ndarray | None:
        if not self.table.has_energy:
            return None
        ops = candidate_ops(candidate)
        parts = [self.table.layer_energy_mj(op) for op in ops]
        overhead = self.table.overhead_energy_mj()
        if overhead is None or any(p is None for p in parts):
            return None
        return np.asarray(_kind_sums(ops, self.table.layer_energy_mj, overhead))

    # -- predicting -----------------------------------------------------------------------

    def predict(self, candidate: Candidate) -> Prediction:
        """Raises TableError when the table lacks one of the candidate's ops."""
        f = self.features(candidate)
        e = self.energy_features(candidate)
        energy = prior_energy = None
        if e is not None:
            prior_energy = float(prior(e)[0])
            fit = self.energy_fit or TABLE
            energy = float(fit.predict(f if self.energy_basis == "time" else e)[0])
        if self.learned is not None:
            rich = np.concatenate([f, self.sizes(candidate)])
            latency, model = float(self.learned.predict(rich)[0]), self.learned.model
        else:
            latency, model = float(self.fit.predict(f)[0]), self.fit.model
        return Prediction(
            latency_ms=latency,
            energy_mj=energy,
            prior_ms=float(prior(f)[0]),
            prior_energy_mj=prior_energy,
            model=model,
            energy_model=self._energy_model_name() if e is not None else None,
        )

    def _energy_model_name(self) -> str:
        model = (self.energy_fit or TABLE).model
        return f"{model} of time" if self.energy_basis == "time" else model

    def observe(
        self,
        prediction: Prediction,
        candidate: Candidate,
        measured_ms: float,
        measured_energy_mj: float | None,
        *,
        refit: bool = True,
    ) -> None:
        """Log ``prediction`` (made before the measurement) against what was measured, then
        refit the corrections on every measurement so far. ``refit=False`` leaves that to
        one :meth:`refit` after many (a resume replaying its log: one fit, not one each)."""
        if not (isinstance(measured_ms, (int, float)) and math.isfinite(measured_ms)):
            raise ValueError(f"measured latency must be a finite number, not {measured_ms!r}")
        if measured_ms <= 0:
            raise ValueError(f"measured latency must be > 0, not {measured_ms!r}")
        if measured_energy_mj is not None and not (
            math.isfinite(measured_energy_mj) and measured_energy_mj > 0
        ):
            measured_energy_mj = None  # no honest figure: left out of the energy fit
        if measured_energy_mj is not None:
            measured_energy_mj = float(measured_energy_mj)
        e = self.energy_features(candidate)
        self.observations.append(
            Observation(
                hash=candidate.hash,
                candidate=candidate.encode(),
                predicted_ms=prediction.latency_ms,
                measured_ms=float(measured_ms),
                prior_ms=prediction.prior_ms,
                model=prediction.model,
                predicted_energy_mj=prediction.energy_mj,
                measured_energy_mj=measured_energy_mj,
                prior_energy_mj=prediction.prior_energy_mj,
                features=tuple(float(v) for v in self.features(candidate)),
                energy_features=None if e is None else tuple(float(v) for v in e),
                sizes=tuple(float(v) for v in self.sizes(candidate)),
            )
        )
        if refit:
            self.refit()

    def refit(self) -> None:
        """Choose and fit the corrections on every observation (latency, and energy where
        measured)."""
        obs = self.observations
        if not obs:
            return
        features = np.asarray([o.features for o in obs])
        measured = np.asarray([o.measured_ms for o in obs])
        self.fit, self.tried = choose(features, measured)
        self.learned = self._learned(features, measured)
        with_energy = [o for o in obs if o.energy_features and o.measured_energy_mj]
        if with_energy:
            joules = np.asarray([o.measured_energy_mj for o in with_energy])
            self.energy_fit, tried = choose(
                np.asarray([o.energy_features for o in with_energy]), joules
            )
            self.energy_basis = "energy"
            # A one-layer model's energy is its whole model's less the overhead's, two
            # noisy figures of similar size; its time is measured beside the overhead. So
            # energy as a fitted power x the table's time is tried too, and kept where it
            # predicts the measurements left out better (never before MIN_FIT["scale"]).
            if len(with_energy) >= MIN_FIT["scale"]:
                by_time, tried_time = choose(
                    np.asarray([o.features for o in with_energy]),
                    joules,
                    models=("scale", "affine", "kinds"),
                )
                if tried_time.get(by_time.model, -1.0) > tried.get(self.energy_fit.model, -1.0):
                    self.energy_fit, self.energy_basis = by_time, "time"

    def _learned(self, features: np.ndarray, measured: np.ndarray) -> Learned | None:
        """The learned correction with the best held-out share within ±10%, where it beats
        the linear one's leave-one-out share (ties: the smaller median error); else None."""
        if any(len(o.sizes) != len(OP_FEATURES) for o in self.observations):
            return None
        rich = np.concatenate([features, [o.sizes for o in self.observations]], axis=1)
        best: Learned | None = None
        score = (self.tried.get(self.fit.model, 0.0), 0.0)
        fits = fit_learned(rich, measured, keep=self.learned_fits)
        self.learned_fits = {f.model: f for f in fits}
        for learned in fits:
            self.tried[learned.model] = learned.within
            mine = (learned.within, -float(np.median(np.abs(learned.held_out))))
            if mine[0] > score[0] or (best is not None and mine > score):
                best, score = learned, mine
        return best

    # -- its error ------------------------------------------------------------------------

    def error(self) -> PredictorError | None:
        """Latency error of every logged prediction; None before the first measurement."""
        obs = self.observations
        return PredictorError.of([o.predicted_ms for o in obs], [o.measured_ms for o in obs])

    def energy_error(self) -> PredictorError | None:
        """Energy error where both a prediction and a measurement exist; None elsewhere."""
        pairs = [
            (o.predicted_energy_mj, o.measured_energy_mj)
            for o in self.observations
            if o.predicted_energy_mj is not None and o.measured_energy_mj is not None
        ]
        return PredictorError.of([p for p, _ in pairs], [m for _, m in pairs])

    def margin(self) -> float | None:
        """The relative error the search allows before it trusts a prediction over budget:
        the learned correction's own interval where one is in use (the 95th percentile of
        its held-out errors), else the 90th percentile of the logged |errors|; at least
        10%; None until MIN_OBSERVATIONS candidates were measured."""
        if len(self.observations) < self.MIN_OBSERVATIONS:
            return None
        if self.learned is not None:
            return max(MIN_MARGIN, self.learned.margin())
        err = [abs(o.error) for o in self.observations]
        return max(MIN_MARGIN, float(np.percentile(err, 90)))

    def energy_margin(self) -> float | None:
        """As :meth:`margin`, for energy: None until MIN_OBSERVATIONS energy pairs."""
        pairs = [
            abs(o.predicted_energy_mj - o.measured_energy_mj) / o.measured_energy_mj
            for o in self.observations
            if o.predicted_energy_mj is not None and o.measured_energy_mj is not None
        ]
        if len(pairs) < self.MIN_OBSERVATIONS:
            return None
        return max(MIN_MARGIN, float(np.percentile(pairs, 90)))

    def margins(self) -> dict[str, float | None]:
        """Each predicted figure's margin by budget name (``latency_ms``: :meth:`margin`,
        ``energy_mj``: :meth:`energy_margin`): each is judged by its own logged error."""
        return {"latency_ms": self.margin(), "energy_mj": self.energy_margin()}

    def over_budgets(
        self, prediction: Prediction, budgets: Budgets
    ) -> list[tuple[Violation, float]]:
        """The budgets ``prediction`` exceeds by more than that figure's own margin, each
        with the margin used (latency first): the search's rule for not training a
        candidate. A figure without a margin yet (fewer than MIN_OBSERVATIONS measured
        pairs) or without a prediction skips nothing: only a measurement decides."""
        figures = {
            "latency_ms": MeasuredFigures(prediction.latency_ms, None),
            "energy_mj": MeasuredFigures(None, prediction.energy_mj),
        }
        out = []
        for name, margin in self.margins().items():
            if margin is None:
                continue
            out += [(v, margin) for v in budgets.over_by_more_than(figures[name], margin)]
        return out

    def describe_error(self) -> str:
        """``latency 92% within ±10%, ...; energy 90% within ±10%, ...`` (the progress line);
        energy only where predicted and measured pairs exist."""
        latency, energy = self.error(), self.energy_error()
        if latency is None:
            return ""
        text = f"latency {latency.describe()}"
        return text + (f"; energy {energy.describe()}" if energy is not None else "")

    def over_budget(self, prediction: Prediction, budget_ms: float) -> bool:
        """True when the prediction exceeds the budget by more than the margin (a candidate
        the search may skip); always False while there is no margin."""
        margin = self.margin()
        return margin is not None and prediction.latency_ms > budget_ms * (1 + margin)

    def describe(self) -> str:
        """The correction in use, for summary.md."""
        if self.learned is not None:
            text = f"latency: {self.learned.model} ({self.learned.describe()})"
        else:
            text = f"latency: {self.fit.model} ({self.fit.describe('ms')})"
        if self.energy_fit is not None:
            how = self.energy_fit.describe("mJ")
            if self.energy_basis == "time":  # the coefficients are powers: mJ per ms is W
                how = how.replace("the table's sum", "the table's time, W")
            text += f"; energy: {self._energy_model_name()} ({how})"
        return text
