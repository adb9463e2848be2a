"""Power through the whole path: a sensor file, the agent's sampler during the timed loop,
the reply, the Measurement. The agent reads a fake /sys (--power-root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwnas_bench.measurement import Measurement
from hwnas_bench.targets import TargetSpec


def ina226_tree(root: Path, microwatts: int, update_interval_ms: int | None = 2) -> Path:
    """An INA226 under hwmon; without ``update_interval`` (as an INA219) the meter does not
    say how often it changes, so the sampler polls at the requested interval."""
    hwmon = root / "sys/class/hwmon/hwmon2"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("ina226\n")
    (hwmon / "power1_input").write_text(f"{microwatts}\n")
    if update_interval_ms is not None:
        (hwmon / "update_interval").write_text(f"{update_interval_ms}\n")
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
    root = ina226_tree(tmp_path / "fake", 2_000_000, update_interval_ms=None)
    with TargetSpec("metered", "local", {"power_root": str(root)}).device() as device:
        m = device.bench(mlp_model, min_time_s=0.05, min_iterations=5, power_interval_s=0.1)
    assert m.power.mean_w is None
    assert m.power.energy_mj is None
    assert m.power.reason is not None
    assert "shorter than the 0.5 s this meter needs (5 sampling periods of 0.1 s)" in (
        m.power.reason
    )
    assert "min_time_s" in m.power.reason
    assert m.power.min_window_s == pytest.approx(0.5)
    assert m.power.update_interval_ms is None


def test_a_simulated_meter_says_so_and_how_it_was_sampled(tmp_path: Path, mlp_model: Path) -> None:
    root = ina226_tree(tmp_path / "fake", 2_000_000, update_interval_ms=5)
    with TargetSpec("metered", "local", {"power_root": str(root)}).device() as device:
        facts = device.open()
        m = device.bench(mlp_model, min_time_s=0.1, min_iterations=5, power_interval_s=0.1)
    assert facts["power_root"] == str(root)
    assert m.board["power_root"] == str(root)
    power = m.power
    assert power.source is not None
    assert power.source.endswith(f"; simulated: power_root {root}")
    assert power.update_interval_ms == pytest.approx(5.0)
    assert power.sample_interval_ms == pytest.approx(5.0)  # the meter's pace, not 100 ms
    assert power.min_window_s == pytest.approx(0.025)
    # a 0.1 s window, too short at 10 Hz, covers a meter polled every 5 ms
    assert power.reason is None
    assert power.mean_w == pytest.approx(2.0)
    again = Measurement.from_json(m.to_json())
    assert again.power == power


def test_asking_for_a_meter_the_board_lacks_is_an_error(tmp_path: Path, mlp_model: Path) -> None:
    from hwnas_bench import AgentError

    root = ina226_tree(tmp_path / "fake", 1_000_000)
    board = TargetSpec("metered", "local", {"power_root": str(root)})
    message = "power meter 'rapl' not found; the board has: hwmon:ina226"
    with board.device() as device, pytest.raises(AgentError, match=message):
        device.bench(mlp_model, power_meter="rapl", min_time_s=0.1)
