"""The variants and the rule that picks one.

The rule, in order: a variant that was not measured, or whose accuracy drop exceeds the
tolerance, is out; so is one that is not faster than fp32 **beyond the measured spread of
both** (:func:`faster_beyond_spread`, on the statistic the search used: every interleaved
round of the variant faster than every round of fp32, and its figure over all rounds at
least ``margin`` below fp32's). With ``objective="energy"`` it must also use less energy
per inference than fp32. Of the rest, the fastest (the lowest ratio to fp32) or the lowest
energy is chosen. If none is left, fp32 stays, and :func:`kept_fp32_because` says why
(with one round there is no spread, so nothing can be called faster).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .measure import Timing
from .sensitivity import points

OBJECTIVES = ("latency", "energy")
#: the fewest interleaved rounds of each variant from which a spread exists
MIN_ROUNDS = 2


@dataclass
class Variant:
    """One model compression made (or the fp32 it started from), with its figures."""

    name: str  #: fp32, int8, int8_dynamic, pruned50, pruned50_int8, ...
    kind: str  #: "fp32", "int8 static", "int8 dynamic", "pruned", "pruned + int8 static"
    model: bytes
    accuracy: float | None = None  #: in [0, 1], measured with onnxruntime on the eval set
    details: dict[str, Any] = field(default_factory=dict)  #: method, exclusions, widths, ...
    timing: Timing = field(default_factory=Timing)
    chosen: bool = False
    reason: str = ""  #: why not chosen ("" for the chosen one)
    file: str | None = None  #: where it was written

    @property
    def size_bytes(self) -> int:
        return len(self.model)

    def drop_points(self, fp32: Variant) -> float | None:
        if self.accuracy is None or fp32.accuracy is None:
            return None
        return points(fp32.accuracy, self.accuracy)


@dataclass(frozen=True)
class Speed:
    """The answer of :func:`faster_beyond_spread`."""

    faster: bool | None  #: None: it cannot be decided (too few rounds, a figure missing)
    why: str  #: for the table: "" when faster


def _ms(x: float) -> str:
    return f"{x:.4g}"


def _span(rounds: Sequence[float]) -> str:
    return f"{_ms(min(rounds))}-{_ms(max(rounds))} ms"


def faster_beyond_spread(
    fp32_rounds: Sequence[float],
    rounds: Sequence[float],
    *,
    fp32_ms: float,
    ms: float,
    stat: str = "p50",
    margin: float = 0.0,
) -> Speed:
    """Whether a variant is faster than fp32 beyond the spread of both.

    ``fp32_rounds`` and ``rounds``: the latency statistic ``stat`` of each interleaved round
    of fp32 and of the variant; ``fp32_ms`` and ``ms``: the same statistic over every sample
    of every round. Faster means the variant's slowest round is faster than fp32's fastest
    (the two spreads do not overlap) and ``ms <= (1 - margin) * fp32_ms`` (the figure
    the table shows is lower too). Fewer than MIN_ROUNDS rounds of either, or a figure that
    is not a positive finite number, cannot be decided.
    """
    n = min(len(fp32_rounds), len(rounds))
    if n < MIN_ROUNDS:
        return Speed(
            None,
            f"cannot tell from noise: {n} round{'s' if n != 1 else ''} of {stat} (a spread "
            f"needs >= {MIN_ROUNDS} interleaved rounds)",
        )
    figures = [*fp32_rounds, *rounds, fp32_ms, ms]
    if not all(math.isfinite(x) and x > 0 for x in figures):
        return Speed(None, f"cannot tell: a {stat} figure is not a positive number")
    ratio = ms / fp32_ms
    if ratio > 1.0:
        return Speed(False, f"slower than fp32 ({stat} x{ratio:.2f})")
    if max(rounds) >= min(fp32_rounds):
        return Speed(
            False,
            f"not faster than fp32 beyond the spread ({stat} x{ratio:.2f}; rounds "
            f"{_span(rounds)} vs fp32's {_span(fp32_rounds)})",
        )
    if ratio > 1.0 - margin:
        return Speed(
            False, f"faster by less than the margin ({stat} x{ratio:.2f} > x{1.0 - margin:.2f})"
        )
    return Speed(True, "")


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if abs(x) >= 0.005 else "0"


def choose(
    variants: Sequence[Variant],
    *,
    tolerance: float,
    objective: str = "latency",
    margin: float = 0.03,
) -> Variant:
    """Mark the chosen variant (``variants[0]`` is fp32) and give every other one its reason.

    ``margin``: the least gain counted, a fraction of fp32's figure, on top of the rounds'
    spread (a variant barely faster is not worth its accuracy cost).
    """
    fp32 = variants[0]
    eligible: list[Variant] = []
    for v in variants[1:]:
        v.chosen, v.reason = False, _reject(v, fp32, tolerance, objective, margin)
        if not v.reason:
            eligible.append(v)
    fp32.chosen, fp32.reason = False, ""

    def score(v: Variant) -> float:
        if objective == "energy":
            assert v.timing.energy_mj is not None
            return v.timing.energy_mj
        assert v.timing.ratio is not None
        return v.timing.ratio

    best = min(eligible, key=score) if eligible else fp32
    best.chosen, best.reason = True, ""
    what = "the fastest" if objective == "latency" else "the lowest energy"
    for v in (fp32, *eligible):
        if v is not best:
            v.reason = f"not {what}" if v is not fp32 else f"not {what} ({best.name} is)"
    return best


def kept_fp32_because(variants: Sequence[Variant]) -> str:
    """Why fp32 stayed: the one reason every measured variant shares when the choice
    could not be decided (one round), else that none was faster within the tolerance."""
    fp32 = variants[0]
    if not fp32.timing.measured:
        return "fp32 was not measured"
    if len(fp32.timing.round_ms) < MIN_ROUNDS:
        return (
            f"cannot be decided: {len(fp32.timing.round_ms)} round, so no spread to tell a "
            f"gain from noise (use >= {MIN_ROUNDS} rounds)"
        )
    if len(variants) == 1:
        return "no variant was made"
    return "no variant was faster than fp32 beyond the rounds' spread within the accuracy tolerance"


def _reject(v: Variant, fp32: Variant, tolerance: float, objective: str, margin: float) -> str:
    t, base = v.timing, fp32.timing
    if not t.measured or t.stat_ms is None:
        return f"not measured: {t.error or 'no timing'}"
    drop = v.drop_points(fp32)
    if drop is None:
        return "accuracy not known"
    if drop > tolerance:
        return f"accuracy drop {_fmt(drop)} points > tolerance {_fmt(tolerance)}"
    assert base.stat_ms is not None  # fp32 is always measured (measure_interleaved)
    speed = faster_beyond_spread(
        base.round_ms, t.round_ms, fp32_ms=base.stat_ms, ms=t.stat_ms, stat=t.stat, margin=margin
    )
    if not speed.faster:
        return speed.why
    if objective == "energy":
        if t.energy_mj is None:
            return f"no energy figure: {t.energy_reason}"
        if base.energy_mj is not None and t.energy_mj >= base.energy_mj:
            return f"more energy than fp32 ({t.energy_mj:.3g} >= {base.energy_mj:.3g} mJ)"
    return ""
