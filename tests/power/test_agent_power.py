"""Power as the agent serves it: the hello facts, and the meter a bench chooses, with a real
``Handlers`` in this process, real frames and a real onnxruntime session."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from onnx import TensorProto

from device_agent.power import CommandNotFoundError, discover_meters

from ..test_agent_requests import bench, binary, handlers_in, upload
from .test_discovery import OneGpu

CPU_ONLY_REASON = (
    "the only meter is NVML (GPU power) and the model runs on the CPU; name it to use it anyway"
)


def _no_vcgencmd(argv: Sequence[str]) -> str:
    raise CommandNotFoundError("vcgencmd: not found", argv)


def ina226_root(root: Path, update_ms: int) -> Path:
    hwmon = root / "sys/class/hwmon/hwmon0"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("ina226\n")
    (hwmon / "power1_input").write_text("4000000\n")
    (hwmon / "update_interval").write_text(f"{update_ms}\n")
    return root


def test_hello_says_the_power_root_and_each_meters_update_interval(tmp_path: Path) -> None:
    root = ina226_root(tmp_path / "fake", update_ms=5)
    facts = handlers_in(tmp_path, power_root=root).hello_facts()
    assert facts["power_root"] == str(root)
    [meter] = [m for m in facts["power_meters"] if m["source"].startswith("hwmon:")]
    assert meter["source"].endswith(f"; simulated: power_root {root}")
    assert meter["update_interval_ms"] == 5.0


def test_hello_on_the_real_root_says_slash_and_nothing_is_simulated(tmp_path: Path) -> None:
    facts = handlers_in(tmp_path).hello_facts()
    assert facts["power_root"] == "/"
    assert all("simulated" not in m["source"] for m in facts["power_meters"])


def test_a_cpu_model_on_a_board_with_only_nvml_gets_no_power_and_the_reason(
    tmp_path: Path,
) -> None:
    h = handlers_in(tmp_path)
    h.power = discover_meters(tmp_path / "empty", _no_vcgencmd, nvml_loader=lambda: OneGpu())
    sha = upload(h, binary("Add", TensorProto.FLOAT, [1, 8]))
    power = bench(h, sha)["power"]
    assert power["source"] is None
    assert power["energy_mj"] is None
    assert power["reason"] == CPU_ONLY_REASON
    named = bench(h, sha, power_meter="nvml")["power"]  # named: used anyway
    assert named["source"] == "nvml:gpu0 (NVIDIA L4) total energy counter, GPU board only"


def test_the_power_block_says_how_the_meter_was_sampled(tmp_path: Path) -> None:
    h = handlers_in(tmp_path, power_root=ina226_root(tmp_path / "fake", update_ms=2))
    sha = upload(h, binary("Add", TensorProto.FLOAT, [1, 8]))
    power = bench(h, sha, min_time_s=0.05, min_iterations=5)["power"]
    assert power["sample_interval_ms"] == 2.0  # the meter's own interval, not 100 ms
    assert power["update_interval_ms"] == 2.0
    assert power["min_window_s"] == pytest.approx(0.01)  # 5 polls of 2 ms
    # a 50 ms window, too short for 10 Hz polling, covers this meter: energy is measured
    assert power["reason"] is None
    assert power["energy_mj"] is not None
