"""Latency and energy budgets, asserted on real boards (copy and adapt).

Run against this machine first:   pytest examples/board_farm
then against a board:            pytest examples/board_farm --hw-target pi5-lab

The budgets below are deliberately loose, so that they hold on a busy machine too (a CI
runner with two cores and `pytest -n 8` makes every run several times slower, and its p95 a
scheduling artefact). They catch a model that is ten times too slow, not one that is 10%
slower: for that, save a baseline on a quiet board (`--hw-autosave`) and let
`--hw-compare-fail "p95:10%"` hold later runs to it. Budgets on the median and on ratios
between models measured on the same board survive a loaded machine; budgets on p95/p99 in
absolute milliseconds do not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parent.parent / "models"
QUICK = {"min_iterations": 10, "min_time_s": 0.2}


def test_convnet_meets_its_latency_budget(hw_bench):
    r = hw_bench(MODELS / "convnet.onnx", threads=1)
    assert r.latency.median_ms < 20  # the median: robust to a loaded machine's spikes
    if r.power.energy_mj is not None:  # boards with a power sensor also get an energy budget
        assert r.power.energy_mj < 50


def test_the_large_convnet_costs_more_than_the_small_one(hw_bench, hw_target):
    """What a hardware-aware search relies on: the board ranks the models the same way,
    however busy it is, because both are measured on it under the same conditions."""
    small = hw_bench(MODELS / "convnet.onnx", threads=1, name="small", **QUICK)
    large = hw_bench(MODELS / "convnet_large.onnx", threads=1, name="large", **QUICK)
    ratio = large.latency.median_ms / small.latency.median_ms
    assert ratio > 5, f"{hw_target.name}: convnet_large only {ratio:.1f}x convnet"


@pytest.mark.hw(threads=4, min_time_s=2.0)
def test_batch_of_eight(hw_bench, hw_target):
    r = hw_bench(MODELS / "mlp.onnx", dims={"batch": 8})
    assert r.throughput_ips > 100, f"{hw_target.name} is too slow"


def test_a_torch_module(hw_bench):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    )
    r = hw_bench(net, torch.randn(1, 3, 64, 64))  # exported to ONNX for you
    assert r.latency.median_ms < 50
