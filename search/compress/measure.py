"""Every variant measured on the board, interleaved, so they compare fairly.

Timings of the same model in two processes one after the other differ by up to ±10% here
(HARDWARE_FACTS "This machine, measured"), so variants are never timed in blocks: each
round measures every variant once (the order rotated from round to round), all rounds in
one lease. Each variant keeps its latency statistic (the search's: p50, p95, p99 or mean)
of every round, whose spread :func:`search.compress.choose.faster_beyond_spread` weighs,
and the same statistic over every sample of every round; its ratio to fp32 is that pooled
figure over fp32's.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hwnas_bench import BenchFailure, BenchSettings, Measurement

from ..measure import Board, latency_of
from ..settings import STATS
from .errors import CompressionError


@dataclass
class Timing:
    """One variant's figures over all rounds."""

    p50_ms: float | None = None  #: median of every sample of every round
    p95_ms: float | None = None
    ratio: float | None = None  #: its ``stat_ms`` / fp32's ``stat_ms``; 1.0 for fp32
    round_p50_ms: list[float] = field(default_factory=list)
    stat: str = "p50"  #: the latency statistic the choice is made on (the search's)
    stat_ms: float | None = None  #: that statistic over every sample of every round
    round_ms: list[float] = field(default_factory=list)  #: that statistic, round by round
    energy_mj: float | None = None  #: median over rounds, per inference; None without a meter
    energy_reason: str | None = None
    error: str | None = None  #: why it could not be measured
    measurements: list[Measurement] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return self.error is None and self.p50_ms is not None

    def to_dict(self) -> dict[str, object]:
        return {
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "latency_stat": self.stat,
            "stat_ms": self.stat_ms,
            "latency_ratio_vs_fp32": self.ratio,
            "round_p50_ms": self.round_p50_ms,
            "round_ms": self.round_ms,
            "energy_mj": self.energy_mj,
            "energy_reason": self.energy_reason,
            "error": self.error,
        }


def _order(n: int, round_index: int) -> list[int]:
    """0..n-1 rotated by the round number (no variant always runs right after another)."""
    shift = round_index % n if n else 0
    return list(range(shift, n)) + list(range(shift))


def measure_interleaved(
    board: Board,
    models: Sequence[bytes],
    names: Sequence[str],
    *,
    rounds: int = 3,
    bench: BenchSettings | None = None,
    stat: str = "p50",
) -> list[Timing]:
    """One Timing per model, on the latency statistic ``stat``; the first model is the
    reference (fp32). Raises CompressionError if the reference cannot be measured."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    if stat not in STATS:
        raise ValueError(f"unknown latency statistic {stat!r} (known: {', '.join(STATS)})")
    plan = [i for r in range(rounds) for i in _order(len(models), r)]
    results = board.measure_many(
        [models[i] for i in plan],
        names=[names[i] for i in plan],
        bench=bench,
    )
    per_model: list[list[tuple[int, Measurement]]] = [[] for _ in models]
    errors: dict[int, str] = {}
    for step, (index, result) in enumerate(zip(plan, results, strict=True)):
        if isinstance(result, BenchFailure):
            errors.setdefault(index, str(result.error).splitlines()[0])
        else:
            per_model[index].append((step // len(models), result))
    if not per_model[0]:
        raise CompressionError(
            f"the fp32 model could not be measured on the board: {errors.get(0)}"
        )
    timings = [_timing(runs, stat, errors.get(i)) for i, runs in enumerate(per_model)]
    base = timings[0].stat_ms
    for t in timings:
        t.ratio = t.stat_ms / base if t.stat_ms is not None and base else None
    return timings


def pooled(samples: np.ndarray, stat: str) -> float:
    """The latency statistic ``stat`` of a set of samples (ms)."""
    if stat == "mean":
        return float(np.mean(samples))
    return float(np.percentile(samples, float(stat[1:])))


def _timing(runs: list[tuple[int, Measurement]], stat: str, error: str | None) -> Timing:
    if not runs:
        return Timing(stat=stat, error=error or "no measurement came back")
    samples = np.concatenate([np.asarray(m.samples_ms, dtype=float) for _, m in runs])
    energies = [m.power.energy_mj for _, m in runs if m.power.energy_mj is not None]
    reasons = [m.power.reason for _, m in runs if m.power.reason]
    energy = statistics.median(energies) if len(energies) == len(runs) else None
    reason = None if energy is not None else (reasons[0] if reasons else "no energy figure")
    return Timing(
        p50_ms=float(np.median(samples)),
        p95_ms=float(np.percentile(samples, 95)),
        round_p50_ms=[m.latency.median_ms for _, m in runs],
        stat=stat,
        stat_ms=pooled(samples, stat),
        round_ms=[latency_of(m, stat) for _, m in runs],
        energy_mj=energy,
        energy_reason=reason,
        error=error,
        measurements=[m for _, m in runs],
    )
