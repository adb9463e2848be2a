"""Integration rules and the wire summary, against hand-computed values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_agent.power import PowerResult, integrate, power_summary
from device_agent.power.integrate import min_window_s, sample_interval_s

SUMMARY_KEYS = {
    "mean_w",
    "energy_mj",
    "source",
    "reason",
    "samples",
    "interval_s",
    "duration_s",
    "sample_interval_ms",
    "update_interval_ms",
    "min_window_s",
}


def test_trapezoid_over_power_samples():
    samples = [(0.0, 1.0), (1.0, 3.0), (2.0, 3.0), (3.0, 1.0), (4.0, 2.0), (5.0, 2.0)]
    result = integrate(samples, "power", "fake", interval_s=1.0)
    # (1+3)/2 + (3+3)/2 + (3+1)/2 + (1+2)/2 + (2+2)/2 = 2 + 3 + 2 + 1.5 + 2
    assert result.energy_j == pytest.approx(10.5)
    assert result.mean_w == pytest.approx(2.1)
    assert result.duration_s == pytest.approx(5.0)
    assert result.n_samples == 6
    assert result.reason is None
    assert result.interval_s == 1.0


def test_uneven_sample_times_are_weighted_by_their_spacing():
    samples = [(10.0, 4.0), (10.1, 4.0), (10.5, 8.0)]
    result = integrate(samples, "power", "fake", interval_s=0.1)
    assert result.energy_j == pytest.approx(0.4 + 2.4)  # 0.1 s at 4 W, 0.4 s from 4 to 8 W


def test_energy_counter_is_differenced():
    samples = [(0.0, 100.0), (0.1, 100.5), (0.2, 101.5), (0.3, 101.5), (0.4, 102.0), (0.5, 103.0)]
    result = integrate(samples, "energy", "fake", interval_s=0.1, wrap_j=1000.0)
    assert result.energy_j == pytest.approx(3.0)
    assert result.mean_w == pytest.approx(6.0)


def test_counter_going_backwards_without_a_wrap_value_gives_no_number():
    samples = [(0.1 * i, e) for i, e in enumerate([5.0, 6.0, 7.0, 1.0, 2.0, 3.0])]
    result = integrate(samples, "energy", "nvml:gpu0", interval_s=0.1, wrap_j=None)
    assert result.energy_j is None
    assert result.mean_w is None
    assert result.reason == (
        "energy counter went backwards (7.000 J -> 1.000 J) and its wrap value is unknown"
    )


def test_window_shorter_than_five_sampling_periods():
    samples = [(0.0, 5.0), (0.1, 5.0), (0.2, 5.0)]
    result = integrate(samples, "power", "fake", interval_s=0.1)
    assert result.energy_j is None
    assert result.mean_w is None
    assert result.reason == (
        "window 0.2 s is shorter than the 0.5 s this meter needs"
        " (5 sampling periods of 0.1 s); raise min_time_s"
    )
    assert result.duration_s == pytest.approx(0.2)
    assert result.n_samples == 3
    assert result.min_window_s == pytest.approx(0.5)


def test_window_of_exactly_five_periods_is_enough():
    samples = [(0.0, 5.0), (0.5, 5.0)]
    assert integrate(samples, "power", "fake", interval_s=0.1).energy_j == pytest.approx(2.5)


def test_window_shorter_than_three_sensor_updates():
    samples = [(0.1 * i, 5.0) for i in range(21)]  # 2.0 s, plenty of sampling periods
    result = integrate(samples, "power", "fake", interval_s=0.1, update_interval_s=1.0)
    assert result.energy_j is None
    assert result.reason == (
        "window 2 s is shorter than the 3 s this meter needs"
        " (3 sensor updates of 1 s); raise min_time_s"
    )
    assert result.min_window_s == pytest.approx(3.0)
    samples = [(0.1 * i, 5.0) for i in range(31)]
    result = integrate(samples, "power", "fake", interval_s=0.1, update_interval_s=1.0)
    assert result.energy_j == pytest.approx(15.0)
    assert result.update_interval_s == 1.0


def test_a_fast_meter_polled_fast_needs_only_a_short_window():
    # an INA226 updating every 2 ms, polled every 2 ms: 5 polls make 10 ms
    samples = [(0.002 * i, 5.0) for i in range(11)]  # 20 ms
    result = integrate(samples, "power", "ina", interval_s=0.002, update_interval_s=0.002)
    assert result.min_window_s == pytest.approx(0.01)
    assert result.energy_j == pytest.approx(5.0 * 0.02)
    short = integrate(samples[:4], "power", "ina", interval_s=0.002, update_interval_s=0.002)
    assert short.reason == (
        "window 0.006 s is shorter than the 0.01 s this meter needs"
        " (5 sampling periods of 0.002 s); raise min_time_s"
    )


@pytest.mark.parametrize(
    ("requested", "update", "polled"),
    [
        (0.1, None, 0.1),  # the meter does not say: the request
        (0.1, 0.035, 0.035),  # an INA226 at its default averaging: its own interval
        (0.1, 0.0001, 0.001),  # never faster than 1 ms
        (0.1, 1.0, 0.1),  # never slower than the request (NVML's 1 s average)
        (0.05, 0.002, 0.002),
    ],
)
def test_the_sampling_interval_follows_the_meter(requested, update, polled):
    assert sample_interval_s(requested, update) == pytest.approx(polled)


def test_min_window_is_five_polls_or_three_updates():
    assert min_window_s(0.1, None) == pytest.approx(0.5)
    assert min_window_s(0.002, 0.002) == pytest.approx(0.01)
    assert min_window_s(0.1, 1.0) == pytest.approx(3.0)


def test_fewer_than_two_samples():
    assert integrate([(0.0, 1.0)], "power", "f", 0.1).reason == (
        "only 1 sample(s): a window needs at least 2"
    )
    assert integrate([], "power", "f", 0.1).n_samples == 0


def test_unknown_kind_is_a_bug_not_a_reason():
    with pytest.raises(ValueError, match="unknown meter kind"):
        integrate([(0.0, 1.0), (1.0, 1.0)], "volts", "f", 0.1)


@given(
    watts=st.floats(min_value=0.0, max_value=500.0),
    gaps=st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=5, max_size=50),
)
def test_constant_power_integrates_to_power_times_duration(watts, gaps):
    times = [0.0]
    for gap in gaps:
        times.append(times[-1] + gap)
    result = integrate([(t, watts) for t in times], "power", "f", interval_s=0.01)
    assert result.energy_j == pytest.approx(watts * times[-1])
    assert result.mean_w == pytest.approx(watts)


def _result(energy_j, mean_w=2.0, reason=None):
    source = "hwmon:ina226 (hwmon3) power1_input"
    return PowerResult(source, 1.5, 16, mean_w, energy_j, reason, 0.035, 0.035, 0.175)


def test_summary_gives_energy_per_inference_in_millijoules():
    # 2 W over a 1.5 s timed window, 600 inferences: 2 * 1.5 * 1000 / 600 = 5 mJ each
    summary = power_summary(_result(energy_j=3.2), n_inferences=600, window_s=1.5)
    assert set(summary) == SUMMARY_KEYS
    assert summary == {
        "mean_w": 2.0,
        "energy_mj": pytest.approx(5.0),
        "source": "hwmon:ina226 (hwmon3) power1_input",
        "reason": None,
        "samples": 16,
        "interval_s": 0.035,
        "duration_s": 1.5,
        "sample_interval_ms": pytest.approx(35.0),
        "update_interval_ms": pytest.approx(35.0),
        "min_window_s": 0.175,
    }


def test_summary_without_a_result_carries_the_unavailable_reason():
    summary = power_summary(None, 100, 1.0, "no power sensor found: vcgencmd: not found")
    assert summary == {
        "mean_w": None,
        "energy_mj": None,
        "source": None,
        "reason": "no power sensor found: vcgencmd: not found",
        "samples": None,
        "interval_s": None,
        "duration_s": None,
        "sample_interval_ms": None,
        "update_interval_ms": None,
        "min_window_s": None,
    }
    assert power_summary(None, 100, 1.0)["reason"] == "power was not measured"


def test_summary_passes_a_result_reason_through():
    summary = power_summary(_result(None, None, "sensor read failed: x"), 100, 1.0)
    assert summary["energy_mj"] is None
    assert summary["mean_w"] is None
    assert summary["reason"] == "sensor read failed: x"


def test_energy_per_inference_uses_the_timed_window_not_the_sampled_span():
    # A slow sensor (40 ms per read) stretches the sampled span to 1.05 s around a 1.00 s
    # window; the inferences ran in the window only.
    result = PowerResult("rpi5-pmic", 1.05, 12, 5.0, 5.25, None, 0.1)
    summary = power_summary(result, n_inferences=1000, window_s=1.0)
    assert summary["energy_mj"] == pytest.approx(5.0)  # 5 W * 1.0 s / 1000, not 5.25 mJ


def test_summary_with_no_inferences_has_no_energy_per_inference():
    summary = power_summary(_result(energy_j=3.0), n_inferences=0, window_s=1.0)
    assert summary["energy_mj"] is None
    assert summary["mean_w"] == 2.0
    assert "no inference ran" in summary["reason"]
