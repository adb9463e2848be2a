"""The corrections of the table's prior, fitted on whole-model measurements (numpy only).

A correction maps a candidate's *features* (the overhead, the table time of its layers
summed per op kind, and the number of its layers) to its latency (or energy). The
measurements it is fitted on are noisy in a particular way on small machines: most sit near
one line, and some are a whole speed state off (0.6x on ``local``). A least-squares line,
even a Huber one, lands between the two groups and misses both; so each correction is
fitted by *maximum consensus* (the hypothesis from two measurements that puts the most
measurements within ±10%, as RANSAC), then refined by least squares of the relative error
on those measurements only.

Models, simplest first: ``table`` (the prior itself), ``scale`` (s·prior), ``affine``
(a + b·prior), ``kinds`` (overhead + a + Σ b_k·time of kind k + c·layers, b_k >= 0: each
one-layer model also pays for feeding its input and fetching its output, which the layers
inside a whole model do not, hence a term per layer). :func:`choose` keeps a more complex
one only where its leave-one-out error is lower.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: feature columns: the overhead, the layers' table time per op kind (the first TIMES
#: columns: their sum is the table's prior; a flat candidate's kinds, then the block kinds,
#: a block kind of a plugin in ``other``), and the number of layers (ops)
FLAT_KINDS = ("conv", "dwconv", "pool", "fc", "classifier")
KIND_COLUMNS = (
    *FLAT_KINDS,
    "mbconv",
    "res",
    "gap",
    "resize",
    "other",
)
FEATURES = ("overhead", *KIND_COLUMNS, "layers")
TIMES = 1 + len(KIND_COLUMNS)
TOL = 0.10  #: the consensus band: the error the search reports against
MAX_HYPOTHESES = 1000
MAX_HELD_OUT = 50  #: leave-one-out over at most the latest this many measurements
#: observations a model needs before it is tried (at least its parameters + 2)
MIN_FIT = {"table": 0, "scale": 2, "affine": 4, "kinds": 10}


@dataclass(frozen=True)
class Fit:
    """A fitted correction: ``model`` and its coefficients over ``FEATURES`` plus an
    intercept; ``table`` is intercept 0 and every coefficient 1."""

    model: str
    intercept: float
    coef: tuple[float, ...]  #: one per FEATURES column
    #: the kinds the fit saw no time of (``kinds``: they keep the line's slope), left out
    #: of describe()
    unseen: tuple[str, ...] = ()

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predictions for the rows of ``features`` (n x len(FEATURES)), floored at a tenth
        of the prior (a correction never predicts a model as free)."""
        f = np.atleast_2d(features)
        raw = self.intercept + f @ np.asarray(self.coef)
        return np.asarray(np.maximum(raw, 0.1 * prior(f)))

    def describe(self, unit: str = "ms") -> str:
        if self.model == "table":
            return "the table's sum"
        if self.model == "scale":
            return f"{self.coef[0]:.3f} × the table's sum"
        if self.model == "affine":
            return f"{self.intercept:+.4g} {unit} + {self.coef[0]:.3f} × the table's sum"
        kinds = zip(FEATURES[1:TIMES], self.coef[1:TIMES], strict=True)
        terms = ", ".join(f"{n} ×{c:.2f}" for n, c in kinds if n not in self.unseen)
        return (
            f"the overhead {self.intercept:+.4g} {unit}, {terms}, "
            f"{self.coef[TIMES]:+.3g} {unit} per layer"
        )


def prior(features: np.ndarray) -> np.ndarray:
    """The table's sum of each row: the overhead and the layers' times."""
    return np.asarray(np.atleast_2d(features)[:, :TIMES].sum(axis=1))


def _line(model: str, a: float, b: float) -> Fit:
    return Fit(model, a, (b,) * TIMES + (0.0,))


TABLE = _line("table", 0.0, 1.0)


def _rel(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.asarray(np.abs(pred - y) / y)


def _best(pred: np.ndarray, y: np.ndarray) -> int:
    """The hypothesis (row of ``pred``) with the most measurements within TOL; ties go to
    the smaller sum of clipped errors."""
    err = np.abs(pred - y) / y
    score = (err <= TOL).sum(axis=1) - np.minimum(err, TOL).sum(axis=1) / (TOL * len(y) + 1)
    return int(np.argmax(score))


def _refine_line(
    p: np.ndarray, y: np.ndarray, a: float, b: float, free: bool
) -> tuple[float, float]:
    """Least relative squares on the measurements within TOL of ``a + b·p``, three times."""
    for _ in range(3):
        inside = _rel(a + b * p, y) <= TOL
        if inside.sum() < 2:
            break
        w = 1.0 / y[inside]
        cols = [p[inside] * w] + ([w] if free else [])
        sol, *_ = np.linalg.lstsq(np.stack(cols, axis=1), y[inside] * w, rcond=None)
        nb, na = float(sol[0]), float(sol[1]) if free else 0.0
        if nb <= 0 or (_rel(na + nb * p, y) <= TOL).sum() < inside.sum():
            break  # a refinement that loses measurements is no better
        a, b = na, nb
    return a, b


def fit_scale(features: np.ndarray, y: np.ndarray) -> Fit:
    p = prior(features)
    ratios = np.append(y / p, 1.0)  # 1: the table as it is, so a fit is never worse in-sample
    b = float(ratios[_best(ratios[:, None] * p[None, :], y)])
    return _line("scale", *_refine_line(p, y, 0.0, b, free=False))


def fit_affine(features: np.ndarray, y: np.ndarray, *, seed: int = 0) -> Fit:
    p = prior(features)
    n = len(y)
    i, j = np.triu_indices(n, k=1)
    if len(i) > MAX_HYPOTHESES:
        pick = np.random.default_rng(seed).choice(len(i), MAX_HYPOTHESES, replace=False)
        i, j = i[pick], j[pick]
    dp = p[i] - p[j]
    ok = np.abs(dp) > 1e-9 * np.abs(p[i])
    b = np.where(ok, (y[i] - y[j]) / np.where(ok, dp, 1.0), 0.0)
    a = y[i] - b * p[i]
    keep = ok & (b > 0)
    # the scale hypotheses too (with no two measurements on one line it degrades to those),
    # and the table as it is (so the fit never has fewer within TOL than the prior)
    b = np.concatenate([b[keep], y / p, [1.0]])
    a = np.concatenate([a[keep], np.zeros(n + 1)])
    k = _best(a[:, None] + b[:, None] * p[None, :], y)
    return _line("affine", *_refine_line(p, y, float(a[k]), float(b[k]), free=True))


def _nnls_rel(x: np.ndarray, target: np.ndarray, y: np.ndarray, free: set[int]) -> np.ndarray:
    """Least squares of ``target`` on the columns of x, weighted by 1/y (relative error),
    every coefficient but those of the ``free`` columns >= 0: negative ones are dropped one
    at a time, as the active-set method does."""
    active = [c for c in range(x.shape[1]) if c in free or np.any(x[:, c] != 0)]
    w = 1.0 / y
    while True:
        sol, *_ = np.linalg.lstsq(x[:, active] * w[:, None], target * w, rcond=None)
        coef = np.zeros(x.shape[1])
        coef[active] = sol
        neg = [c for c in active if c not in free and coef[c] < 0]
        if not neg:
            return coef
        active.remove(min(neg, key=lambda c: coef[c]))


def fit_kinds(features: np.ndarray, y: np.ndarray) -> Fit:
    """overhead + a + Σ b_k·(time of kind k) + c·layers, on the affine fit's consensus set,
    re-selected thrice. A kind that none of those measurements holds keeps the affine
    slope."""
    base = fit_affine(features, y)
    x = np.concatenate([np.ones((len(y), 1)), features[:, 1:]], axis=1)
    target = y - features[:, 0]
    free = {0, x.shape[1] - 1}  # the intercept and the per-layer term may be negative
    current = Fit("kinds", base.intercept, base.coef)  # the affine line, until one fits
    inside = _rel(base.predict(features), y) <= TOL
    # parameters: the intercept, the flat kinds, the layers, and the block kinds some
    # measurement holds (a flat space's candidates hold none)
    block_kinds = np.any(features[:, 1 + len(FLAT_KINDS) : TIMES] != 0, axis=0)
    held = 2 + len(FLAT_KINDS) + int(block_kinds.sum())
    for _ in range(3):
        if inside.sum() < held + 2:
            break
        coef = _nnls_rel(x[inside], target[inside], y[inside], free)
        unseen = ~np.any(features[inside, 1:TIMES] != 0, axis=0)
        kinds = np.where(unseen, base.coef[0], coef[1:TIMES])
        names = tuple(n for n, u in zip(KIND_COLUMNS, unseen, strict=True) if u)
        coefs = (1.0, *(float(c) for c in kinds), float(coef[-1]))
        trial = Fit("kinds", float(coef[0]), coefs, names)
        now = _rel(trial.predict(features), y) <= TOL
        if now.sum() < inside.sum():
            break  # never fewer within TOL than the line it started from
        current, inside = trial, now
    return current


FITTERS: dict[str, Callable[[np.ndarray, np.ndarray], Fit]] = {
    "table": lambda f, y: TABLE,
    "scale": fit_scale,
    "affine": fit_affine,
    "kinds": fit_kinds,
}


def loo_errors(model: str, features: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Relative errors of ``model`` on each of the latest MAX_HELD_OUT measurements, fitted
    on all the others (leave one out)."""
    n = len(y)
    if model == "table":
        return _rel(prior(features), y)[-MAX_HELD_OUT:]
    out = []
    for i in range(max(0, n - MAX_HELD_OUT), n):
        rest = np.arange(n) != i
        fit = FITTERS[model](features[rest], y[rest])
        out.append(float(_rel(fit.predict(features[i]), y[i : i + 1])[0]))
    return np.asarray(out)


def choose(
    features: np.ndarray, y: np.ndarray, *, models: tuple[str, ...] = tuple(MIN_FIT)
) -> tuple[Fit, dict[str, float]]:
    """The model with the best leave-one-out error (share within ±10%, then median), a more
    complex one only where it is strictly better; fitted on everything. Also the
    leave-one-out share within ±10% of each model tried. ``models``: those that may be
    tried (features in another unit than ``y`` leave out ``table``; the first of them that
    ``y`` has enough measurements for is the fallback)."""
    usable = [m for m in models if len(y) >= max(MIN_FIT[m], 1)]
    best, best_score = (usable[0] if usable else models[0]), (-1.0, 0.0)
    tried: dict[str, float] = {}
    for model, need in MIN_FIT.items():
        if model not in models or len(y) < max(need, 1):
            continue
        err = loo_errors(model, features, y)
        score = (float(np.mean(err <= TOL)), -float(np.median(err)))
        tried[model] = score[0]
        if score > best_score:
            best, best_score = model, score
    return FITTERS[best](features, y), tried
