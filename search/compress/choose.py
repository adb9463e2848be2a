"""The variants and the rule that picks one.

The rule, in order: a variant that was not measured, or whose accuracy drop exceeds the
tolerance, or that measured slower than fp32 (or not faster by more than the noise
margin) is out; of the rest, the fastest (objective ``latency``: the lowest median ratio
to fp32) or the lowest energy per inference (``energy``, and below fp32's) is chosen.
If none is left, fp32 stays: a variant that measured slower is never chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .measure import Timing
from .sensitivity import points

OBJECTIVES = ("latency", "energy")


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

    ``margin``: a variant must measure at least this fraction faster than fp32 (median of
    the per-round ratios <= 1 - margin) to count as faster; the rounds' noise is of that
    order here, and a variant that is not clearly faster is not worth its accuracy cost.
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


def _reject(v: Variant, fp32: Variant, tolerance: float, objective: str, margin: float) -> str:
    t = v.timing
    if not t.measured or t.ratio is None:
        return f"not measured: {t.error or 'no timing'}"
    drop = v.drop_points(fp32)
    if drop is None:
        return "accuracy not known"
    if drop > tolerance:
        return f"accuracy drop {_fmt(drop)} points > tolerance {_fmt(tolerance)}"
    if t.ratio > 1.0:
        return f"slower than fp32 (x{t.ratio:.2f})"
    if t.ratio > 1.0 - margin:
        return f"not faster than fp32 beyond the noise (x{t.ratio:.2f} > x{1.0 - margin:.2f})"
    if objective == "energy":
        if t.energy_mj is None:
            return f"no energy figure: {t.energy_reason}"
        base = fp32.timing.energy_mj
        if base is not None and t.energy_mj >= base:
            return f"more energy than fp32 ({t.energy_mj:.3g} >= {base:.3g} mJ)"
    return ""
