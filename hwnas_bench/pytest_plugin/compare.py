"""Regression checks of a measurement against a baseline: ``p95:10%``, ``energy:5%``, ``p99:2ms``.

Each check is parsed from ``STAT:LIMIT``; LIMIT is a percentage of the baseline or an
absolute amount in the statistic's unit (``ms`` for latency, ``mJ`` for energy, ``W`` for
power, ``MB`` for memory, ``/s`` for throughput). A check fails when the new value is worse
than the baseline by more than the limit; "worse" is higher, except for throughput. It fails
too when the baseline has the figure and this run has none (a meter that stopped reporting
must not pass as "no regression"); a figure the baseline lacks is not compared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import HwnasError
from ..report import cpu_ranges


@dataclass(frozen=True)
class Statistic:
    name: str
    path: tuple[str, ...]  #: where it lives in Measurement JSON
    unit: str
    higher_is_worse: bool = True
    #: where the Measurement says why the figure is missing (power's ``reason``), if anywhere
    reason_path: tuple[str, ...] | None = None


STATISTICS: dict[str, Statistic] = {
    s.name: s
    for s in (
        Statistic("mean", ("latency", "mean_ms"), "ms"),
        Statistic("median", ("latency", "median_ms"), "ms"),
        Statistic("p90", ("latency", "p90_ms"), "ms"),
        Statistic("p95", ("latency", "p95_ms"), "ms"),
        Statistic("p99", ("latency", "p99_ms"), "ms"),
        Statistic("min", ("latency", "min_ms"), "ms"),
        Statistic("max", ("latency", "max_ms"), "ms"),
        Statistic("std", ("latency", "std_ms"), "ms"),
        Statistic("iqr", ("latency", "iqr_ms"), "ms"),
        Statistic("throughput", ("throughput_ips",), "/s", higher_is_worse=False),
        Statistic("energy", ("power", "energy_mj"), "mJ", reason_path=("power", "reason")),
        Statistic("power", ("power", "mean_w"), "W", reason_path=("power", "reason")),
        Statistic("memory", ("memory", "peak_rss_mb"), "MB"),
    )
}
ALIASES = {"p50": "median"}

_CHECK = re.compile(
    r"^\s*(?P<stat>[a-z0-9]+)\s*:\s*(?P<num>[0-9]*\.?[0-9]+)\s*(?P<unit>%|[a-zA-Z/]+)\s*$"
)


class CompareExpressionError(HwnasError):
    """A ``--hw-compare-fail`` expression that cannot be parsed."""


@dataclass(frozen=True)
class RegressionCheck:
    stat: Statistic
    limit: float
    percent: bool

    @property
    def text(self) -> str:
        return f"{self.stat.name}:{self.limit:g}{'%' if self.percent else self.stat.unit}"

    def evaluate(self, baseline: Mapping[str, Any], current: Mapping[str, Any]) -> Verdict:
        old, new = _value(baseline, self.stat.path), _value(current, self.stat.path)
        if old is None:
            return Verdict(self, old, new, failed=False, skipped=f"no {self.stat.name} in baseline")
        if new is None:
            return Verdict(self, old, new, failed=True, missing=self._why_missing(current))
        worse_by = (new - old) if self.stat.higher_is_worse else (old - new)
        allowed = old * self.limit / 100.0 if self.percent else self.limit
        return Verdict(self, old, new, failed=worse_by > allowed)

    def _why_missing(self, current: Mapping[str, Any]) -> str:
        node: Any = current
        for key in self.stat.reason_path or ():
            node = node.get(key) if isinstance(node, Mapping) else None
        return node if isinstance(node, str) and node else "no reason given"


@dataclass(frozen=True)
class Verdict:
    check: RegressionCheck
    baseline: float | None
    value: float | None
    failed: bool
    skipped: str | None = None  #: why it was not compared: the baseline lacks the figure
    #: why this run lacks a figure the baseline has (the Measurement's reason): a failure
    missing: str | None = None

    @property
    def change_pct(self) -> float | None:
        if self.baseline in (None, 0) or self.value is None:
            return None
        return 100.0 * (self.value - self.baseline) / self.baseline

    def describe(self, test: str, target: str) -> str:
        stat, unit = self.check.stat.name, self.check.stat.unit
        if self.skipped:
            return f"{test} on {target}: {stat}: not compared ({self.skipped})"
        if self.missing is not None:
            return (
                f"{test} on {target}: {stat}: baseline {self.baseline:.4g} {unit}, "
                f"this run not measured: {self.missing}"
            )
        change = f" ({self.change_pct:+.1f}%)" if self.change_pct is not None else ""
        word = "regressed" if self.failed else "ok"
        direction = "+" if self.check.stat.higher_is_worse else "-"
        limit = f"{direction}{self.check.limit:g}{'%' if self.check.percent else ' ' + unit}"
        return (
            f"{test} on {target}: {stat} {word}: {self.value:.4g} {unit} vs baseline "
            f"{self.baseline:.4g} {unit}{change}, threshold {limit}"
        )


def _value(data: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = data
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def parse_checks(expression: str) -> list[RegressionCheck]:
    """``"p95:10%,energy:5%"`` -> checks. Raise CompareExpressionError naming the bad part."""
    checks = []
    for part in filter(None, (p.strip() for p in expression.split(","))):
        match = _CHECK.match(part)
        if not match:
            raise CompareExpressionError(
                f"cannot parse '{part}': expected STAT:N% or STAT:N<unit>, e.g. p95:10% or p99:2ms"
            )
        name = ALIASES.get(match["stat"], match["stat"])
        if name not in STATISTICS:
            known = ", ".join([*STATISTICS, *ALIASES])
            raise CompareExpressionError(
                f"unknown statistic '{match['stat']}' in '{part}' ({known})"
            )
        stat = STATISTICS[name]
        percent = match["unit"] == "%"
        if not percent and match["unit"] != stat.unit:
            raise CompareExpressionError(
                f"'{part}': {name} is measured in {stat.unit}, not {match['unit']}"
            )
        checks.append(RegressionCheck(stat, float(match["num"]), percent))
    return checks


#: Board facts that make two measurements not comparable when they differ.
SETUP_FACTS = ("hostname", "device_model", "cpu_model", "arch", "onnxruntime", "governor")


def setup_differences(baseline_board: Mapping[str, Any], board: Mapping[str, Any]) -> list[str]:
    """What changed between the baseline's board and this one (other board, onnxruntime…)."""
    return [
        f"{key}: {baseline_board.get(key)!r} -> {board.get(key)!r}"
        for key in SETUP_FACTS
        if baseline_board.get(key) != board.get(key)
    ]


def _cpus_text(cpus: Any) -> str:
    return cpu_ranges(cpus) if isinstance(cpus, list) and cpus else "all"


def measurement_setup_differences(
    baseline: Mapping[str, Any], current: Mapping[str, Any]
) -> list[str]:
    """:func:`setup_differences` of the boards, then what the run was told and given:
    ``--cpus``, ``--governor`` and the CPUs the agent actually ran on."""
    diffs = setup_differences(baseline.get("board") or {}, current.get("board") or {})
    old_settings, new_settings = baseline.get("settings") or {}, current.get("settings") or {}
    old_cpus, new_cpus = old_settings.get("cpus"), new_settings.get("cpus")
    if old_cpus != new_cpus:
        diffs.append(f"--cpus: {_cpus_text(old_cpus)} -> {_cpus_text(new_cpus)}")
    old_gov, new_gov = old_settings.get("governor"), new_settings.get("governor")
    if old_gov != new_gov:
        diffs.append(
            f"--governor: {repr(old_gov) if old_gov else 'not set'} -> "
            f"{repr(new_gov) if new_gov else 'not set'}"
        )
    old_aff = (baseline.get("environment") or {}).get("affinity")
    new_aff = (current.get("environment") or {}).get("affinity")
    if old_aff and new_aff and sorted(old_aff) != sorted(new_aff):
        diffs.append(f"CPUs used (affinity): {_cpus_text(old_aff)} -> {_cpus_text(new_aff)}")
    return diffs
