"""Regression-check expressions and their verdicts, by hand."""

from __future__ import annotations

import pytest

from hwnas_bench.pytest_plugin.compare import (
    CompareExpressionError,
    parse_checks,
    setup_differences,
)


def m(p95: float, energy: float | None = None, throughput: float = 100.0) -> dict:
    return {
        "latency": {"p95_ms": p95, "median_ms": p95 / 2},
        "power": {"energy_mj": energy},
        "throughput_ips": throughput,
    }


def test_parse_percent_and_absolute() -> None:
    checks = parse_checks("p95:10%, energy:5%,p50:0.5ms , throughput:3%")
    assert [c.text for c in checks] == ["p95:10%", "energy:5%", "median:0.5ms", "throughput:3%"]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("p95", "cannot parse"),
        ("p96:10%", "unknown statistic 'p96'"),
        ("p95:2mJ", "measured in ms"),
        ("energy:1ms", "measured in mJ"),
    ],
)
def test_bad_expressions_are_named(expr: str, message: str) -> None:
    with pytest.raises(CompareExpressionError, match=message):
        parse_checks(expr)


def test_percent_threshold() -> None:
    (check,) = parse_checks("p95:10%")
    assert not check.evaluate(m(10.0), m(10.9)).failed
    verdict = check.evaluate(m(10.0), m(11.5))
    assert verdict.failed
    assert verdict.change_pct == pytest.approx(15.0)
    text = verdict.describe("test_x[pi5]", "pi5")
    assert text == (
        "test_x[pi5] on pi5: p95 regressed: 11.5 ms vs baseline 10 ms (+15.0%), threshold +10%"
    )


def test_absolute_threshold() -> None:
    (check,) = parse_checks("median:0.5ms")
    assert not check.evaluate(m(10.0), m(10.9)).failed  # medians 5.0 -> 5.45
    assert check.evaluate(m(10.0), m(12.0)).failed  # 5.0 -> 6.0


def test_throughput_regresses_downwards() -> None:
    (check,) = parse_checks("throughput:5%")
    assert not check.evaluate(m(1, throughput=100), m(1, throughput=200)).failed
    assert check.evaluate(m(1, throughput=100), m(1, throughput=90)).failed


def test_missing_energy_is_not_a_pass_or_a_fail() -> None:
    (check,) = parse_checks("energy:5%")
    verdict = check.evaluate(m(1, energy=None), m(1, energy=2.0))
    assert not verdict.failed
    assert verdict.skipped == "no energy in baseline"


def test_energy_the_baseline_had_and_this_run_lacks_fails_with_the_runs_reason() -> None:
    (check,) = parse_checks("energy:5%")
    run = m(1, energy=None)
    run["power"]["reason"] = "window 0.083 s too short for the meter (needs 0.5 s)"
    verdict = check.evaluate(m(1, energy=3.4), run)
    assert verdict.failed
    assert verdict.skipped is None
    assert verdict.missing == "window 0.083 s too short for the meter (needs 0.5 s)"
    assert verdict.describe("test_e[pi4]", "pi4") == (
        "test_e[pi4] on pi4: energy: baseline 3.4 mJ, this run not measured: "
        "window 0.083 s too short for the meter (needs 0.5 s)"
    )


def test_a_missing_latency_figure_fails_too_without_a_reason_to_give() -> None:
    (check,) = parse_checks("p95:10%")
    verdict = check.evaluate(m(10.0), {"latency": {}, "power": {}})
    assert verdict.failed
    assert verdict.missing == "no reason given"
    assert (
        verdict.describe("t", "b")
        == "t on b: p95: baseline 10 ms, this run not measured: no reason given"
    )


def test_setup_differences_name_what_changed() -> None:
    old = {"hostname": "pi5-a", "onnxruntime": "1.17.0", "governor": "performance"}
    new = {"hostname": "pi5-a", "onnxruntime": "1.18.1", "governor": "ondemand"}
    assert setup_differences(old, new) == [
        "onnxruntime: '1.17.0' -> '1.18.1'",
        "governor: 'performance' -> 'ondemand'",
    ]


def test_setup_differences_include_cpus_and_governor_requests() -> None:
    from hwnas_bench.pytest_plugin.compare import measurement_setup_differences

    board = {"hostname": "pi5-a", "onnxruntime": "1.18.1", "governor": "ondemand"}
    old = {
        "board": board,
        "settings": {"cpus": None, "governor": None},
        "environment": {"affinity": [0, 1, 2, 3]},
    }
    new = {
        "board": board,
        "settings": {"cpus": [2, 3], "governor": "performance"},
        "environment": {"affinity": [2, 3]},
    }
    assert measurement_setup_differences(old, new) == [
        "--cpus: all -> 2-3",
        "--governor: not set -> 'performance'",
        "CPUs used (affinity): 0-3 -> 2-3",
    ]
    assert measurement_setup_differences(old, old) == []
