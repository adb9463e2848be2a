"""Latency statistics and the drift test, computed where the samples are taken.

Percentiles use NumPy's default linear interpolation. Outliers follow Tukey's fences
(1.5 IQR beyond the quartiles, as pytest-benchmark counts them) and are reported, never
dropped. Drift compares the last quarter of the samples with the first using a one-sided
Mann-Whitney U test (normal approximation with tie correction), which assumes nothing about
the shape of latency distributions; a significant result also has to be a slowdown worth
naming (``min_slowdown``) because with thousands of samples trivial shifts are "significant".
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np

#: Fewer samples than this in a quarter and the drift test is not run (reported as None).
MIN_QUARTER = 8


def latency_stats(samples_ns: np.ndarray) -> Dict[str, Any]:
    """Summary statistics in milliseconds; keys match ``Measurement.latency``."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    n = int(ms.size)
    if n == 0:
        raise ValueError("no samples")
    q1, median, q3, p90, p95, p99 = np.percentile(ms, [25, 50, 75, 90, 95, 99])
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    return {
        "n": n,
        "mean_ms": float(ms.mean()),
        "median_ms": float(median),
        "p90_ms": float(p90),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "std_ms": float(ms.std(ddof=1)) if n > 1 else 0.0,
        "iqr_ms": float(iqr),
        "outliers": int(np.count_nonzero((ms < low) | (ms > high))),
    }


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts)  # tie group of each sorted element, from 1
    ends = np.cumsum(np.bincount(group))  # ends[g]: elements in groups <= g
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = (ends[group - 1] + 1 + ends[group]) / 2.0
    return ranks


def mann_whitney_greater(early: np.ndarray, late: np.ndarray) -> float:
    """One-sided p-value that ``late`` tends to be larger than ``early``."""
    n1, n2 = early.size, late.size
    both = np.concatenate([early, late]).astype(np.float64)
    ranks = _average_ranks(both)
    u_late = float(ranks[n1:].sum()) - n2 * (n2 + 1) / 2.0
    n = n1 + n2
    _, tie_counts = np.unique(both, return_counts=True)
    tie_term = float(np.sum(tie_counts.astype(np.float64) ** 3 - tie_counts))
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0:  # every sample equal: no evidence of anything
        return 1.0
    z = (u_late - n1 * n2 / 2.0 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def drift(
    samples_ns: np.ndarray, alpha: float = 0.01, min_slowdown: float = 0.05
) -> Dict[str, Optional[Any]]:
    """Is the last quarter significantly slower than the first (warm-up drift, throttling)?

    Returns ``detected`` (None when there are too few samples), ``slowdown_pct`` (late
    median over early median, minus one) and ``p_value``.
    """
    data = np.asarray(samples_ns, dtype=np.float64)
    quarter = data.size // 4
    if quarter < MIN_QUARTER:
        return {"detected": None, "slowdown_pct": None, "p_value": None}
    early, late = data[:quarter], data[-quarter:]
    slowdown = float(np.median(late) / np.median(early) - 1.0)
    p_value = mann_whitney_greater(early, late)
    return {
        "detected": bool(p_value < alpha and slowdown > min_slowdown),
        "slowdown_pct": round(100.0 * slowdown, 3),
        "p_value": p_value,
    }
