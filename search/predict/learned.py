"""The learned correction: how far a whole model's latency is from the table's sum, from the
sizes of its ops (scikit-learn), with its own cross-validated error as its interval.

A model's latency is not the sum of its ops: each one-op model of the table also pays for
its session's call, for feeding its input and fetching its output, and for the nodes it
dispatches, which the ops inside a whole model share, and onnxruntime fuses some nodes
across ops (a conv and its activation). How much depends on the op's size, not only on its
kind. So the correction reads, per candidate, the kinds' shares of the table's time, the
number of ops and of ONNX nodes, the MACs, parameters and elements moved (``ops.op_features``
summed), and the overhead's share, and predicts ``log(measured / table sum)``:

- ``huber``: a linear regression on the standardised features with an L2 penalty (ridge)
  and a Huber loss: a measurement that a busy host or a passing speed state threw off by
  20-70% (about one in six on a shared 2-core VM) weighs as a small error, not a square;
  few parameters, good from a few dozen measurements. Measured on the stage space
  (docs/predictor.md): a squared loss (plain ridge) lands 86% within ±10%, the Huber loss
  90%;
- ``boost``: gradient-boosted trees of depth 2 with a Huber loss, for what is not
  log-linear.

Each model's error is measured by K-fold cross-validation on the measurements (every one
predicted by a fit that did not see it); :mod:`fit`'s linear corrections stay the fallback
and are kept wherever they cross-validate as well. The 95th percentile of the chosen
model's held-out errors is the margin the search's skip rule allows
(``Predictor.margin``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .fit import FEATURES, TIMES, TOL, prior
from .ops import OP_FEATURES

#: a candidate's learned-correction columns: FEATURES, then its ops' OP_FEATURES summed
RICH = (*FEATURES, *OP_FEATURES)
#: measurements before a learned model is tried (fewer: the linear corrections only)
MIN_LEARNED = {"huber": 20, "boost": 40}
FOLDS = 10
#: the Huber regression's L2 penalty on the standardised features (0.03-3 measured alike)
HUBER_ALPHA = 0.3
#: measurements between two fits of a slow model (a model not named: after each one)
REFIT_EVERY = {"boost": 10}
#: the held-out error quantile the skip rule allows
MARGIN_QUANTILE = 95
#: a learned correction never moves a prediction further than this factor from the table's
#: sum (an extrapolation far outside the measurements stays bounded)
MAX_FACTOR = 4.0


class _Regressor(Protocol):
    def fit(self, x: Any, y: Any) -> Any: ...

    def predict(self, x: Any) -> Any: ...


def design(rich: np.ndarray) -> np.ndarray:
    """The regression's inputs of each row of ``rich`` (n x len(RICH))."""
    r = np.atleast_2d(np.asarray(rich, dtype=float))
    f = r[:, : len(FEATURES)]
    p = np.maximum(prior(f), 1e-9)
    macs, params, moved, nodes = (r[:, len(FEATURES) + i] for i in range(len(OP_FEATURES)))
    layers = f[:, TIMES]
    return np.column_stack(
        [
            np.log(p),
            f[:, 0] / p,  # the overhead's share: how much of the sum is per-call cost
            f[:, 1:TIMES] / p[:, None],  # each kind's share of the table's time
            layers,
            nodes,
            layers * f[:, 0] / p,  # the one-op models' calls, as a share of the sum
            np.log1p(macs),
            np.log1p(params),
            np.log1p(moved),
            np.log1p(macs) - np.log(p),  # MACs per ms: how compute-bound the ops are
        ]
    )


def _estimator(model: str, n: int) -> _Regressor:
    if model == "huber":
        from sklearn.linear_model import HuberRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        huber = HuberRegressor(epsilon=1.35, alpha=HUBER_ALPHA, max_iter=1000)
        return make_pipeline(StandardScaler(), huber)  # type: ignore[no-any-return]
    if model == "boost":
        from sklearn.ensemble import GradientBoostingRegressor

        return GradientBoostingRegressor(  # type: ignore[no-any-return]
            loss="huber",
            alpha=0.5,  # the residuals beyond their median are the Huber loss's tails
            n_estimators=100,
            max_depth=2,
            learning_rate=0.05,
            subsample=0.8,
            min_samples_leaf=max(3, n // 20),
            random_state=0,
        )
    raise ValueError(f"unknown learned model {model!r} (known: {', '.join(MIN_LEARNED)})")


@dataclass(frozen=True)
class Learned:
    """A fitted learned correction and its held-out relative errors (signed, one per
    measurement it was cross-validated on)."""

    model: str
    estimator: Any
    held_out: tuple[float, ...]

    def predict(self, rich: np.ndarray) -> np.ndarray:
        r = np.atleast_2d(rich)
        p = prior(r[:, : len(FEATURES)])
        log_ratio = np.clip(
            self.estimator.predict(design(r)), -np.log(MAX_FACTOR), np.log(MAX_FACTOR)
        )
        return np.asarray(p * np.exp(log_ratio))

    @property
    def n(self) -> int:
        """Measurements it was fitted on."""
        return len(self.held_out)

    @property
    def within(self) -> float:
        """Held-out share within ±10%."""
        return float(np.mean(np.abs(self.held_out) <= TOL))

    def margin(self) -> float:
        return float(np.percentile(np.abs(self.held_out), MARGIN_QUANTILE))

    def describe(self) -> str:
        what = {"huber": "Huber regression", "boost": "gradient-boosted trees"}[self.model]
        return (
            f"{what} on log(measured / table's sum) from the ops' kinds, counts, MACs and "
            f"bytes; {100 * self.within:.0f}% within ±10% held out ({len(self.held_out)} "
            f"measured), {MARGIN_QUANTILE}th percentile error {100 * self.margin():.1f}%"
        )


def _fit(model: str, rich: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    est = _estimator(model, len(y))
    target = np.log(y / np.maximum(prior(rich[:, : len(FEATURES)]), 1e-9))
    # one BLAS thread: on a small busy host, threads fighting over the cores make a fit
    # of a hundred rows 5-10x slower (measured)
    with warnings.catch_warnings(), threadpool_limits(1):
        # lbfgs stopping at max_iter: a fit all the same, judged by its held-out error
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(design(rich), target)
    return est


def held_out_errors(model: str, rich: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed relative errors of ``model`` on every measurement, each predicted by a fit on
    the other folds (K-fold, at most FOLDS, in the measurements' order)."""
    n = len(y)
    folds = np.arange(n) % min(FOLDS, n)
    out = np.empty(n)
    for k in np.unique(folds):
        test = folds == k
        probe = Learned(model, _fit(model, rich[~test], y[~test]), ())
        out[test] = (probe.predict(rich[test]) - y[test]) / y[test]
    return out


def fit_learned(
    rich: np.ndarray, y: np.ndarray, *, keep: Mapping[str, Learned] | None = None
) -> list[Learned]:
    """Each learned model that ``y`` has enough measurements for, fitted on all of them,
    with its held-out errors. A model in ``keep`` fitted on at least 1/(1 + REFIT_EVERY) of
    fewer measurements than ``y`` holds is kept as it is (boosted trees take a second
    each on a small machine: refitted as the measurements grow, not after each one)."""
    rich, y = np.atleast_2d(np.asarray(rich, dtype=float)), np.asarray(y, dtype=float)
    out = []
    for model, need in MIN_LEARNED.items():
        if len(y) < need:
            continue
        old = (keep or {}).get(model)
        if old is not None and model in REFIT_EVERY and len(y) < old.n + REFIT_EVERY[model]:
            out.append(old)
            continue
        errors = held_out_errors(model, rich, y)
        out.append(Learned(model, _fit(model, rich, y), tuple(float(e) for e in errors)))
    return out
