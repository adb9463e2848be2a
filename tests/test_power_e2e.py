"""Power through the whole path: a sensor file, the agent's sampler during the timed loop,
the reply, the Measurement. The agent reads a fake /sys (--power-root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwnas_bench.targets import TargetSpec


def ina226_tree(root: Path, microwatts: int) -> Path:
    hwmon = root / "sys/class/hwmon/hwmon2"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("ina226\n")
    (hwmon / "power1_input").write_text(f"{microwatts}\n")
    (hwmon / "update_interval").write_text("2\n")
    return root


def test_constant_power_gives_exact_watts_and_energy_per_inference(
    tmp_path: Path, conv_model: Path
) -> None:
    root = ina226_tree(tmp_path / "fake", 5_000_000)  # 5 W, as an INA226 on the supply
    with TargetSpec("metered", "local", {"power_root": str(root)}).device() as device:
        facts = device.open()
        assert facts["power_meters"][0]["source"].startswith("hwmon:ina226 (hwmon2)")
        m = device.bench(conv_model, min_time_s=1.0, power_interval_s=0.05, threads=1)
    power = m.power
    assert power.reason is None
    assert power.source is not None
    assert power.source.startswith("hwmon:ina226")
    assert power.mean_w == pytest.approx(5.0)
    # energy per inference = 5 W x the timed window / the inferences run in that window
    assert power.samples is not None
    assert power.samples >= 15
    assert m.window_s is not None
    assert power.duration_s is not None
    assert power.duration_s >= m.window_s  # the sampled span brackets the window
    assert power.energy_mj == pytest.approx(5.0 * m.window_s / m.latency.n * 1000, rel=1e-9)


def test_window_too_short_for_the_sampling_rate_gives_no_number(
    tmp_path: Path, mlp_model: Path
) -> None:
    root = ina226_tree(tmp_path / "fake", 2_000_000)
    with TargetSpec("metered", "local", {"power_root": str(root)}).device() as device:
        m = device.bench(mlp_model, min_time_s=0.05, min_iterations=5, power_interval_s=0.1)
    assert m.power.mean_w is None
    assert m.power.energy_mj is None
    assert m.power.reason is not None
    assert "min_time_s" in m.power.reason


def test_asking_for_a_meter_the_board_lacks_is_an_error(tmp_path: Path, mlp_model: Path) -> None:
    from hwnas_bench import AgentError

    root = ina226_tree(tmp_path / "fake", 1_000_000)
    board = TargetSpec("metered", "local", {"power_root": str(root)})
    message = "power meter 'rapl' not found; the board has: hwmon:ina226"
    with board.device() as device, pytest.raises(AgentError, match=message):
        device.bench(mlp_model, power_meter="rapl", min_time_s=0.1)
