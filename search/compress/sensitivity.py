"""Precision calibration: the calibration method by measured accuracy, then the layers whose
quantization costs the most accuracy kept in float while the drop exceeds the tolerance.

Sensitivity of a layer = the accuracy drop (points) when that layer alone is quantized.
The layers are excluded one at a time, most sensitive first, each step measured; the loop
stops as soon as the drop is within the tolerance, or when one int8 layer is left (with
every layer in float there is no int8 model left to measure).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .quantize import StaticQuantizer

#: model bytes -> accuracy in [0, 1] on the evaluation set
Accuracy = Callable[[bytes], float]


def points(fp32: float, other: float) -> float:
    """Accuracy drop in percentage points (positive: worse than fp32)."""
    return round(100.0 * (fp32 - other), 6)


@dataclass
class Precision:
    """The outcome: the int8 model and how it was reached."""

    model: bytes
    method: str
    accuracy: float
    methods: dict[str, float]  #: method -> accuracy with every layer int8
    excluded: list[str] = field(default_factory=list)  #: layers kept in float, in order
    sensitivity: dict[str, float] = field(default_factory=dict)  #: layer -> drop, points
    steps: list[dict[str, object]] = field(default_factory=list)  #: each exclusion measured

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "methods_accuracy": self.methods,
            "excluded_nodes": self.excluded,
            "sensitivity_points": self.sensitivity,
            "exclusion_steps": self.steps,
        }


def choose_method(
    quantizer: StaticQuantizer, accuracy: Accuracy, methods: Sequence[str]
) -> tuple[str, bytes, float, dict[str, float]]:
    """Quantize with each method, keep the most accurate (ties: the first listed)."""
    best: tuple[str, bytes, float] | None = None
    seen: dict[str, float] = {}
    for method in methods:
        model = quantizer.quantize(method)
        acc = accuracy(model)
        seen[method] = acc
        if best is None or acc > best[2]:
            best = (method, model, acc)
    assert best is not None, "at least one method"
    return (*best, seen)


def layer_sensitivity(
    quantizer: StaticQuantizer, accuracy: Accuracy, method: str, fp32: float
) -> dict[str, float]:
    """Layer -> accuracy drop (points) with only that layer int8, in graph order."""
    return {
        node: points(fp32, accuracy(quantizer.quantize(method, only=[node])))
        for node in quantizer.nodes
    }


def keep_in_float(
    quantizer: StaticQuantizer,
    accuracy: Accuracy,
    fp32: float,
    tolerance: float,
    start: Precision,
) -> Precision:
    """Exclude the most sensitive layers, one at a time, while the drop > ``tolerance``."""
    result = start
    if points(fp32, result.accuracy) <= tolerance or len(quantizer.nodes) < 2:
        return result
    result.sensitivity = layer_sensitivity(quantizer, accuracy, result.method, fp32)
    order = sorted(quantizer.nodes, key=lambda n: -result.sensitivity[n])  # stable: graph order
    excluded: list[str] = []
    for node in order[:-1]:
        excluded.append(node)
        model = quantizer.quantize(result.method, exclude=excluded)
        acc = accuracy(model)
        result.steps.append({"excluded": node, "accuracy": acc, "drop_points": points(fp32, acc)})
        if acc > result.accuracy or points(fp32, acc) <= tolerance:
            result.model, result.accuracy, result.excluded = model, acc, list(excluded)
        if points(fp32, acc) <= tolerance:
            break
    return result


def calibrate_precision(
    quantizer: StaticQuantizer,
    accuracy: Accuracy,
    *,
    fp32: float,
    tolerance: float,
    methods: Sequence[str],
) -> Precision:
    """The int8 model within ``tolerance`` points of ``fp32`` if any exclusion gets there,
    else the most accurate one found (the choice rule then rejects it, with its drop)."""
    method, model, acc, seen = choose_method(quantizer, accuracy, methods)
    start = Precision(model, method, acc, seen)
    return keep_in_float(quantizer, accuracy, fp32, tolerance, start)
