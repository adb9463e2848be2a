"""Which side of a latency budget a model is on, decided at 95% confidence.

A measurement is a few timed rounds (``Board.rounds``); each round gives its own figure of
the budget's statistic (its p95, say). Rounds far from the budget decide at once. Where the
95% interval of the rounds' mean contains the budget (a model just over or under it, on a
host whose rounds spread a few per cent), the model is measured again, a batch of rounds
at a time in separate leases (so the rounds interleave with the farm's other work and do
not all fall in one slow or fast spell), until the interval lies on one side, or
:data:`MAX_ROUNDS` is reached: then the model is ``undecided`` and never counts as within
the budget. Every round is kept (:class:`Verdict`).

The interval is Student's t on the rounds' figures (rounds are repeated, independent loops
of the same model; their figures are means and quantiles of many samples, close to normal).
Energy is judged on its figure as measured (its rounds are long windows of the meter, often
one per measurement).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hwnas_bench import Measurement

LEVEL = 0.95
#: the most rounds one decision measures (the first batch included): with the usual three
#: per batch, four leases
MAX_ROUNDS = 12

WITHIN, OVER, UNDECIDED = "within", "over", "undecided"
SIDES = (WITHIN, OVER, UNDECIDED)


#: a round's figure of the budget's statistic (``search.measure.latency_of``)
Figure = Callable[["Measurement"], float]


def interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float] | None:
    """Student's t interval of the mean of ``values`` at ``level``; None for fewer than two
    or a value that is not finite."""
    if len(values) < 2 or not all(math.isfinite(v) for v in values):
        return None
    from scipy import stats as scipy_stats  # on first use: settings import this module

    mean = statistics.fmean(values)
    half = float(scipy_stats.t.ppf(0.5 + level / 2, len(values) - 1)) * (
        statistics.stdev(values) / math.sqrt(len(values))
    )
    return mean - half, mean + half


@dataclass(frozen=True)
class Verdict:
    """The side of ``budget`` the rounds put the model on, with the interval and every
    round's figure (ms, the budget's statistic)."""

    side: str  #: within, over or undecided
    budget: float
    stat: str
    rounds: tuple[float, ...]
    low: float | None = None
    high: float | None = None
    level: float = LEVEL

    @property
    def decided(self) -> bool:
        return self.side != UNDECIDED

    @property
    def slack(self) -> float:
        """What the study is told (> 0: violated). Undecided: how far the interval reaches
        over the budget, so it is never feasible and a near miss is steered less hard."""
        if self.side == UNDECIDED and self.high is not None:
            return max(self.high - self.budget, math.ulp(self.budget))
        return middle(self.rounds) - self.budget

    def reason(self) -> str:
        shown = f"[{self.low:.4g}, {self.high:.4g}] ms" if self.low is not None else "none"
        return (
            f"undecided: the {self.level:.0%} interval of {self.stat} over {len(self.rounds)} "
            f"rounds, {shown}, straddles the budget {self.budget:g} ms"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "budget": self.budget,
            "stat": self.stat,
            "level": self.level,
            "low": self.low,
            "high": self.high,
            "rounds": list(self.rounds),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Verdict | None:
        """A record's verdict; None for one that is not (an older record has none)."""
        if not isinstance(data, Mapping) or data.get("side") not in SIDES:
            return None
        try:
            rounds = tuple(float(v) for v in data["rounds"])
            low, high = data.get("low"), data.get("high")
            return cls(
                side=str(data["side"]),
                budget=float(data["budget"]),
                stat=str(data["stat"]),
                rounds=rounds,
                low=None if low is None else float(low),
                high=None if high is None else float(high),
                level=float(data.get("level", LEVEL)),
            )
        except (KeyError, TypeError, ValueError):
            return None


def middle(values: Sequence[float]) -> float:
    """The median round's figure (the upper one of two): the figure the record shows."""
    return sorted(values)[len(values) // 2] if values else math.nan


def judge(values: Sequence[float], budget: float, stat: str, level: float = LEVEL) -> Verdict:
    """The side of ``budget`` the rounds' figures are on. Within: the interval's top and
    the median round at or under the budget; over: its bottom and the median round above;
    else undecided (one round alone is undecided: it has no interval)."""
    rounds = tuple(float(v) for v in values)
    span = interval(rounds, level)
    median = middle(rounds)
    if span is None:
        return Verdict(UNDECIDED, budget, stat, rounds, level=level)
    low, high = span
    if high <= budget and median <= budget:
        side = WITHIN
    elif low > budget and median > budget:
        side = OVER
    else:
        side = UNDECIDED
    return Verdict(side, budget, stat, rounds, low, high, level)


@dataclass
class Decided:
    """A model measured until its side of the budget was known (or the cap reached): the
    median round as its Measurement, every round, and the verdict (None: no budget)."""

    measurement: Measurement
    rounds: list[Measurement]
    verdict: Verdict | None


def median_round(rounds: Sequence[Measurement], figure: Figure | None = None) -> Measurement:
    """The median round by ``figure`` (default: median latency; the upper one of two): a
    real measurement, as the agent made it, whose figure is the verdict's."""
    ordered = sorted(rounds, key=figure or (lambda m: m.latency.median_ms))
    return ordered[len(ordered) // 2]


def measure_decided(
    measure_batch: Callable[[], list[Measurement]],
    budget: float | None,
    stat: str,
    figure: Figure,
    *,
    max_rounds: int = MAX_ROUNDS,
    level: float = LEVEL,
) -> Decided:
    """Batches of rounds from ``measure_batch`` until the rounds put the model on one side
    of ``budget`` at ``level``, or ``max_rounds`` rounds were measured (undecided). No
    budget: one batch, no verdict. ``figure`` reads a round's figure of ``stat``."""
    rounds = list(measure_batch())
    if budget is None:
        return Decided(median_round(rounds), rounds, None)  # as Board.measure: by p50
    verdict = judge([figure(m) for m in rounds], budget, stat, level)
    while not verdict.decided and len(rounds) < max_rounds:
        more = measure_batch()
        if not more:
            break
        rounds += more[: max_rounds - len(rounds)]
        verdict = judge([figure(m) for m in rounds], budget, stat, level)
    return Decided(median_round(rounds, figure), rounds, verdict)
