"""The simulated INA226: a fake /sys meter whose power follows the agent's CPU use, read by
the real local agent through --power-root, as a board's meter is."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.power.errors import PowerReadError
from device_agent.power.hwmon_ina2xx import find_hwmon_ina2xx
from hwnas_bench.targets import TargetSpec
from hwnas_bench.testing import SimulatedIna226, layout_ina226

pytest_plugins = ["hwnas_bench.testing.power_fixtures"]

#: Clearly above 2 W idle (+3 W a busy core), even for a process that gets a sliver of a core.
ABOVE_IDLE = 2.0 + 0.05 * 3.0
#: Long enough for the agent's sampler (every 20 ms) to give a figure, short enough to be quick.
METERED = {"min_time_s": 0.5, "power_interval_s": 0.02, "threads": 1, "warmup_min_s": 0.05}


def mean_power(meter: SimulatedIna226, updates: int) -> float:
    """The power written over the next ``updates`` conversions, averaged."""
    values = []
    for _ in range(updates):
        meter.wait_updates(1)
        values.append(meter.power_w)
    return sum(values) / len(values)


@pytest.fixture
def spinner(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process that keeps one core busy; its command line names another power root."""
    other = tmp_path / "other-root"
    code = "while True: pass"
    proc = subprocess.Popen([sys.executable, "-c", code, "--power-root", str(other)])
    yield proc
    proc.kill()
    proc.wait()


def test_the_layout_is_what_the_agents_finder_reads(tmp_path: Path) -> None:
    hwmon = layout_ina226(tmp_path, 3_400_000, update_interval_ms=8)
    assert hwmon == tmp_path / "sys/class/hwmon/hwmon0"
    assert (hwmon / "name").read_text() == "ina226\n"
    meters, reasons = find_hwmon_ina2xx(tmp_path)
    assert reasons == []
    (meter,) = meters
    assert meter.source.startswith("hwmon:ina226 (hwmon0)")
    assert meter.read() == 3.4
    assert meter.update_interval_s == 0.008


def test_a_heavy_model_costs_more_energy_than_a_light_one(
    metered_target: TargetSpec,
    simulated_ina226: SimulatedIna226,
    conv_model: Path,
    mlp_model: Path,
) -> None:
    with metered_target.device() as device:
        assert device.open()["power_meters"][0]["source"].startswith("hwmon:ina226")
        simulated_ina226.wait_for_agent()
        light = device.bench(mlp_model, **METERED)
        heavy = device.bench(conv_model, **METERED)
    for m in (light, heavy):
        assert m.power.reason is None
        assert m.power.source is not None
        assert m.power.source.startswith("hwmon:ina226")
        assert m.power.mean_w is not None
        # the work shows above the 2 W idle (by 3 W a core; by less on a crowded host)
        assert m.power.mean_w > ABOVE_IDLE
    assert light.power.energy_mj is not None
    assert heavy.power.energy_mj is not None
    assert heavy.power.energy_mj > 5 * light.power.energy_mj


def test_one_thread_costs_k_watts_for_each_inferences_latency(
    tmp_path: Path, conv_model: Path
) -> None:
    root = tmp_path / "root"
    with (
        SimulatedIna226(root, idle_w=0.0, k_w=3.0) as meter,
        TargetSpec("metered", "local", {"power_root": str(root)}).device() as device,
    ):
        device.open()
        meter.wait_for_agent()
        m = device.bench(conv_model, **METERED)
    assert m.power.energy_mj is not None
    # No idle power: the energy is k_w × the CPU time per inference. The median latency is an
    # inference's CPU time even on a crowded host (most are never preempted; the mean is not).
    ratio = m.power.energy_mj / (3.0 * m.latency.median_ms)
    assert 0.5 <= ratio <= 1.6


def test_only_the_watched_processes_cost_power(
    tmp_path: Path, spinner: subprocess.Popen[bytes]
) -> None:
    root = tmp_path / "root"
    with SimulatedIna226(root, idle_w=2.0, k_w=3.0) as meter:
        meter.wait_updates(60)  # 0.3 s: past a rescan, which must not take the spinner
        assert meter.watched == frozenset()
        assert mean_power(meter, 40) == 2.0
        code = "while True: pass"
        agent_like = subprocess.Popen([sys.executable, "-c", code, "--power-root", str(root)])
        try:
            assert meter.wait_for_agent(timeout=5.0) == {agent_like.pid}
            assert mean_power(meter, 100) > ABOVE_IDLE
        finally:
            agent_like.kill()
            agent_like.wait()
    with SimulatedIna226(tmp_path / "given", idle_w=2.0, k_w=3.0, pids=[spinner.pid]) as meter:
        meter.wait_updates(2)  # the first sets the spinner's starting point
        assert meter.watched == {spinner.pid}
        assert mean_power(meter, 100) > ABOVE_IDLE


def test_a_reader_never_sees_a_partial_number(tmp_path: Path) -> None:
    # every 2 ms a new value (the reader's own CPU use), read as the agent reads it
    with SimulatedIna226(tmp_path, update_interval_ms=2, pids=[os.getpid()]) as meter:
        (reader,) = find_hwmon_ina2xx(tmp_path)[0]
        start = meter.updates
        values, bad = set(), []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                values.add(reader.read())
            except PowerReadError as exc:
                bad.append(str(exc))
        written = meter.updates - start
    assert bad == []
    assert written >= 100
    assert len(values) >= 10


def test_stop_is_prompt_even_between_slow_conversions(tmp_path: Path) -> None:
    meter = SimulatedIna226(tmp_path, update_interval_ms=2000).start()
    begun = time.monotonic()
    meter.stop()
    assert time.monotonic() - begun < 1.0
    assert not [t for t in threading.enumerate() if t.name == "simulated-ina226"]
    with pytest.raises(RuntimeError, match="stopped"):
        meter.wait_updates(1)


def test_the_fixtures_load_through_pytest_plugins(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_meter="""
pytest_plugins = ["hwnas_bench.testing.power_fixtures"]

def test_meter(simulated_ina226, metered_target):
    assert metered_target.transport == "local"
    assert metered_target.options["power_root"] == str(simulated_ina226.root)
    simulated_ina226.wait_updates(3)
    power = simulated_ina226.root / "sys/class/hwmon/hwmon0/power1_input"
    assert power.read_text() == "2000000\\n"  # idle: nothing watched runs
"""
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
