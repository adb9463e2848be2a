"""Derive the architecture to measure from a trained supernet's distribution.

Plain argmax per position ignores the budget, and measuring a candidate the table already
predicts outside the budget band spends a board measurement for nothing. So the derivation
ranks architectures by log-probability under softmax(α) and takes the most probable whose
table prediction lies in a band (bands are tried in order: the inner band first), passes
``accept`` (the analytic limits, not proposed before) and, with an energy model, stays
within ``energy_max``; with an energy budget too, one in the band of both budgets comes
first. If no band holds one, the accepted architecture closest below the
last band; with no bands (fixed λ), the most probable accepted one.

The search is a beam over positions in which the partial architectures are grouped by
(output shape, predicted-latency bucket) and the ``per_group`` most probable of each group
kept: the rest of a path's latency depends only on its shape, so this is a dynamic
programme over (shape, latency) accurate to one bucket, not a top-k that would only see
architectures of one latency. Partials that cannot end at or below the top of the last band
are dropped early.

:class:`DerivedGenesSampler` then records the derived candidate's genes in the study.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from ...errors import SettingsError
from ...space import Candidate
from .supernet import CostModel, Positions

BUCKETS = 100  #: latency buckets across the range searched
PER_GROUP = 3  #: partials kept per (shape, bucket)


@dataclass(frozen=True)
class Derived:
    candidate: Candidate
    table_ms: float  #: the table's prediction
    log_prob: float
    #: the band's name (with ", latency and energy" when in both), "below band", "fastest"
    #: or "argmax"
    how: str
    energy_mj: float | None  #: the energy model's prediction, uncorrected


@dataclass(frozen=True)
class _Path:
    log_prob: float
    latency: float
    state: int
    picks: tuple[int, ...]


def _min_future(latency: CostModel) -> list[np.ndarray]:
    """Per position and input state: the least latency the remaining positions add."""
    future = [latency.classifier.copy()]
    for cost, nxt in zip(reversed(latency.costs), reversed(latency.next), strict=True):
        future.insert(0, (cost + future[0][nxt]).min(axis=1))
    return future


def _complete(
    log_probs: Sequence[np.ndarray], latency: CostModel, top: float, buckets: int, per_group: int
) -> list[_Path]:
    """Complete paths (classifier included) that can end at or below ``top``."""
    future = _min_future(latency)
    span = max(float(future[0][0]), 1e-9)
    width = (top - latency.constant) / buckets if math.isfinite(top) else None
    if width is None or width <= 0:
        width = max(span, 1e-9) / buckets * 4  # no top: buckets over a few times the minimum
    paths = [_Path(0.0, latency.constant, 0, ())]
    for i, (cost, nxt, lp) in enumerate(zip(latency.costs, latency.next, log_probs, strict=True)):
        groups: dict[tuple[int, int], list[tuple[float, int, _Path]]] = {}
        for path in paths:
            for j in range(cost.shape[1]):
                lat = path.latency + float(cost[path.state, j])
                state = int(nxt[path.state, j])
                if lat + float(future[i + 1][state]) > top:
                    continue
                new = _Path(path.log_prob + float(lp[j]), lat, state, (*path.picks, j))
                heap = groups.setdefault((state, math.floor(lat / width)), [])
                item = (new.log_prob, len(heap), new)
                if len(heap) < per_group:
                    heapq.heappush(heap, item)
                elif item[0] > heap[0][0]:
                    heapq.heapreplace(heap, item)
        paths = [item[2] for heap in groups.values() for item in heap]
    return [
        _Path(p.log_prob, p.latency + float(latency.classifier[p.state]), p.state, p.picks)
        for p in paths
    ]


def derive(
    macro: Positions,
    log_probs: Sequence[np.ndarray],
    latency: CostModel,
    *,
    bands: Sequence[tuple[str, float, float]] | None,
    accept: Callable[[Candidate], bool],
    energy: CostModel | None = None,
    energy_max: float | None = None,
    energy_bands: Sequence[tuple[float, float]] | None = None,
    buckets: int = BUCKETS,
    per_group: int = PER_GROUP,
) -> Derived | None:
    """The architecture to measure, or None when no architecture is accepted.

    ``bands`` are (name, low, high) table-latency ranges, tried in order; None: the most
    probable. ``energy_bands`` (with ``energy``): the (low, high) table-energy range of each
    band; an architecture in both of a band's ranges comes first (``"<band>, latency and
    energy"``), before any in the latency bands alone. When nothing is accepted at or below
    the bands: the fastest accepted.
    """
    top = max(hi for _, _, hi in bands) if bands else math.inf
    paths = _complete(log_probs, latency, top, buckets, per_group)

    def first(
        pool: list[_Path],
        how: str,
        key: Callable[[_Path], float],
        joules_within: tuple[float, float] | None = None,
    ) -> Derived | None:
        for path in sorted(pool, key=key, reverse=True):
            candidate = macro.candidate(path.picks)
            joules = energy.of(path.picks) if energy is not None else None
            if energy_max is not None and joules is not None and joules > energy_max:
                continue
            if joules_within is not None and not (
                joules is not None and joules_within[0] <= joules <= joules_within[1]
            ):
                continue
            if accept(candidate):
                return Derived(candidate, latency.of(path.picks), path.log_prob, how, joules)
        return None

    if not bands:
        return first(paths, "argmax", lambda p: p.log_prob)
    tiers: list[tuple[str, float, float, tuple[float, float] | None]] = []
    if energy is not None and energy_bands is not None:
        if len(energy_bands) != len(bands):
            raise ValueError(f"{len(energy_bands)} energy bands for {len(bands)} bands")
        tiers += [
            (f"{name}, latency and energy", lo, hi, joules)
            for (name, lo, hi), joules in zip(bands, energy_bands, strict=True)
        ]
    tiers += [(name, lo, hi, None) for name, lo, hi in bands]
    for name, lo, hi, joules_within in tiers:
        pool = [p for p in paths if lo <= p.latency <= hi]
        found = first(pool, name, lambda p: p.log_prob, joules_within)
        if found is not None:
            return found
    low = min(lo for _, lo, _ in bands)
    below = [p for p in paths if p.latency < low]
    found = first(below, "below band", lambda p: p.latency)
    if found is not None:
        return found
    # the budget is below every architecture: the fastest (its measurement says so)
    every = _complete(log_probs, latency, math.inf, buckets, per_group)
    return first(every, "fastest", lambda p: -p.latency)


class DerivedGenesSampler(optuna.samplers.BaseSampler):
    """Answers each gene with the value the strategy stashed for the trial it proposes, so
    the study records the derived candidate's genome like any other trial's."""

    def __init__(self) -> None:
        self.genes: dict[str, Any] = {}

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if param_name not in self.genes:
            raise SettingsError(f"no derived value for gene {param_name!r}")
        return self.genes[param_name]
