"""Latency statistics and the drift test, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from device_agent import stats


def ns(ms: list[float]) -> np.ndarray:
    return (np.asarray(ms) * 1e6).astype(np.int64)


def test_statistics_of_a_small_sample() -> None:
    s = stats.latency_stats(ns([1, 2, 3, 4, 100]))
    assert s["n"] == 5
    assert s["mean_ms"] == pytest.approx(22.0)
    assert s["median_ms"] == pytest.approx(3.0)
    # linear interpolation: p90 at rank 3.6 between 4 and 100
    assert s["p90_ms"] == pytest.approx(4 + 0.6 * 96)
    assert s["min_ms"] == 1
    assert s["max_ms"] == 100
    assert s["iqr_ms"] == pytest.approx(2.0)  # q1=2, q3=4
    assert s["outliers"] == 1  # 100 > 4 + 1.5 * 2
    assert s["std_ms"] == pytest.approx(np.std([1, 2, 3, 4, 100], ddof=1))


def test_one_sample_has_zero_spread() -> None:
    s = stats.latency_stats(ns([2.5]))
    assert s["std_ms"] == 0.0
    assert s["p99_ms"] == pytest.approx(2.5)


def test_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="no samples"):
        stats.latency_stats(np.array([], dtype=np.int64))


def test_average_ranks_match_scipy_convention() -> None:
    ranks = stats._average_ranks(np.array([10.0, 20.0, 20.0, 5.0]))
    assert ranks.tolist() == [2.0, 3.5, 3.5, 1.0]


def test_mann_whitney_p_value_by_hand() -> None:
    # early=[1,2,3], late=[4,5,6]: U_late = 9, mean 4.5, var = 9*7/12 = 5.25
    # z = (9 - 4.5 - 0.5)/sqrt(5.25) = 1.7457; one-sided p = 0.0404
    p = stats.mann_whitney_greater(np.array([1.0, 2, 3]), np.array([4.0, 5, 6]))
    assert p == pytest.approx(0.04043, abs=1e-4)


def test_drift_detected_for_a_slowdown() -> None:
    rng = np.random.default_rng(0)
    samples = np.concatenate([rng.normal(10, 0.2, 300), rng.normal(12, 0.2, 100)])
    d = stats.drift(ns(samples.tolist()))
    assert d["detected"] is True
    assert d["slowdown_pct"] == pytest.approx(20, abs=2)
    assert d["p_value"] < 1e-6


def test_no_drift_for_a_steady_run() -> None:
    rng = np.random.default_rng(1)
    d = stats.drift(ns(rng.normal(10, 0.2, 400).tolist()))
    assert d["detected"] is False


def test_tiny_but_significant_shift_is_not_called_drift() -> None:
    samples = np.concatenate([np.full(1000, 10.0), np.full(1000, 10.1)])
    d = stats.drift(ns(samples.tolist()))
    assert d["p_value"] < 1e-6
    assert d["detected"] is False


def test_too_few_samples_for_drift() -> None:
    assert stats.drift(ns([1.0] * 20))["detected"] is None
