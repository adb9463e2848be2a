"""Latency and energy budgets, asserted on real boards (copy and adapt).

Run against this machine first:   pytest examples/board_farm
then against a board:            pytest examples/board_farm --hw-target pi5-lab
"""

from __future__ import annotations

from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parent.parent / "models"


def test_convnet_meets_its_latency_budget(hw_bench):
    r = hw_bench(MODELS / "convnet.onnx", threads=1)
    assert r.latency.p95_ms < 20
    if r.power.energy_mj is not None:  # boards with a power sensor also get an energy budget
        assert r.power.energy_mj < 50


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
    assert r.latency.median_ms < 10
