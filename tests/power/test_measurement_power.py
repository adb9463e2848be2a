"""The Measurement's power block: the sampling fields travel through JSON, and results
written before they existed still load."""

from __future__ import annotations

import json
from dataclasses import replace

from hwnas_bench.measurement import Measurement, ModelInfo, from_bench_reply

LATENCY = {
    "n": 3,
    "mean_ms": 1.0,
    "median_ms": 1.0,
    "p90_ms": 1.0,
    "p95_ms": 1.0,
    "p99_ms": 1.0,
    "min_ms": 1.0,
    "max_ms": 1.0,
    "std_ms": 0.0,
    "iqr_ms": 0.0,
    "outliers": 0,
}
POWER = {
    "mean_w": 2.0,
    "energy_mj": 0.5,
    "source": "hwmon:ina226 (hwmon0) power1_input, board supply (as wired)",
    "reason": None,
    "samples": 41,
    "interval_s": 0.005,
    "duration_s": 0.2,
    "sample_interval_ms": 5.0,
    "update_interval_ms": 5.0,
    "min_window_s": 0.025,
}


def _measurement(power: dict) -> Measurement:
    reply = {
        "settings": {},
        "latency": LATENCY,
        "power": power,
        "memory": {},
        "environment": {},
    }
    return from_bench_reply("board", {}, ModelInfo("0" * 64, 10), reply, [1.0, 1.0, 1.0])


def test_the_sampling_fields_come_from_the_reply_and_round_trip() -> None:
    m = _measurement(POWER)
    assert m.power.sample_interval_ms == 5.0
    assert m.power.update_interval_ms == 5.0
    assert m.power.min_window_s == 0.025
    again = Measurement.from_json(m.to_json())
    assert again == m
    assert json.loads(m.to_json())["power"]["min_window_s"] == 0.025


def test_a_result_without_them_still_loads() -> None:
    old_power = {k: v for k, v in POWER.items() if k not in _NEW}
    data = _measurement(POWER).to_dict()
    data["power"] = old_power
    loaded = Measurement.from_dict(data)
    assert loaded.power.update_interval_ms is None
    assert loaded.power.sample_interval_ms is None
    assert loaded.power.min_window_s is None
    assert replace(loaded.power, **{k: POWER[k] for k in _NEW}) == _measurement(POWER).power


_NEW = ("sample_interval_ms", "update_interval_ms", "min_window_s")
