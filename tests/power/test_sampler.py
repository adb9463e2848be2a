"""PowerSampler with fake meters driven by a fake clock; the thread really runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from device_agent.power import PowerMeter, PowerReadError, PowerSampler

WAIT_S = 10.0  # generous upper bound for a loaded CI box; normally milliseconds


class FakeClock:
    """Advances by ``step`` on every call, so timestamps do not depend on real time."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 100.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.now += self.step
            return self.now


class FunctionMeter(PowerMeter):
    """Reads ``value(clock.now)``; sets ``enough`` after ``wanted`` reads; can fail."""

    def __init__(
        self,
        clock: FakeClock,
        value: Callable[[float], float],
        kind: str = "power",
        wanted: int = 10,
        fail_at: int | None = None,
        update_interval_s: float | None = None,
    ) -> None:
        super().__init__("fake:meter", kind, "board", update_interval_s=update_interval_s)
        self.clock = clock
        self.value = value
        self.wanted = wanted
        self.fail_at = fail_at
        self.reads = 0
        self.enough = threading.Event()

    def read(self) -> float:
        self.reads += 1
        if self.reads >= self.wanted:
            self.enough.set()
        if self.fail_at is not None and self.reads >= self.fail_at:
            self.enough.set()
            raise PowerReadError("power1_input: No such device")
        return self.value(self.clock.now)


def _run(meter: FunctionMeter, clock: FakeClock, interval_s: float = 0.001) -> PowerSampler:
    sampler = PowerSampler(meter, interval_s=interval_s, clock=clock)
    sampler.start()
    assert meter.enough.wait(WAIT_S)
    sampler.stop()
    return sampler


def test_constant_power_gives_power_times_window():
    clock = FakeClock(step=0.05)
    meter = FunctionMeter(clock, lambda t: 5.0)
    sampler = _run(meter, clock)
    result = sampler.result
    assert result is not None
    samples = sampler.samples
    assert result.n_samples == len(samples) >= 11  # the first, >= 9 polled, the last
    assert result.duration_s == pytest.approx(samples[-1][0] - samples[0][0])
    assert result.energy_j == pytest.approx(5.0 * result.duration_s)
    assert result.mean_w == pytest.approx(5.0)
    assert result.reason is None
    assert result.source == "fake:meter"
    assert [t for t, _ in samples] == sorted(t for t, _ in samples)


def test_linear_power_is_integrated_exactly():
    # A sample is stamped at the middle of its read (before + step/2) while the fake meter
    # saw the clock at `before`; the trapezoid rule is exact for a linear function.
    step = 0.05
    clock = FakeClock(step)
    sampler = _run(FunctionMeter(clock, lambda t: 2.0 + 3.0 * (t - 100.0)), clock)
    samples = sampler.samples
    t0, t1 = samples[0][0] - step / 2, samples[-1][0] - step / 2

    def antiderivative(t: float) -> float:
        return 2.0 * t + 1.5 * (t - 100.0) ** 2

    assert sampler.result is not None
    assert sampler.result.energy_j == pytest.approx(antiderivative(t1) - antiderivative(t0))


def test_energy_counter_meter():
    clock = FakeClock(step=0.05)
    meter = FunctionMeter(clock, lambda t: 10.0 * t, kind="energy")  # a 10 W counter
    result = _run(meter, clock).result
    assert result is not None
    assert result.mean_w == pytest.approx(10.0)
    assert result.energy_j == pytest.approx(10.0 * result.duration_s)


def test_failing_read_mid_window_gives_no_number():
    clock = FakeClock(step=0.05)
    meter = FunctionMeter(clock, lambda t: 5.0, fail_at=4)
    sampler = _run(meter, clock)
    result = sampler.result
    assert result is not None
    assert result.energy_j is None
    assert result.mean_w is None
    assert result.reason == "sensor read failed: power1_input: No such device"
    assert result.n_samples == 3
    assert meter.reads == 4  # no final reading after the failure


def test_failing_first_read_starts_no_thread():
    clock = FakeClock(step=0.05)
    meter = FunctionMeter(clock, lambda t: 5.0, fail_at=1)
    sampler = PowerSampler(meter, interval_s=0.001, clock=clock)
    sampler.start()
    result = sampler.stop()
    assert result.reason == "sensor read failed: power1_input: No such device"
    assert result.n_samples == 0
    assert meter.reads == 1


def test_too_short_window_gives_the_reason_to_lengthen_it():
    clock = FakeClock(step=0.01)
    meter = FunctionMeter(clock, lambda t: 5.0, wanted=1)
    sampler = PowerSampler(meter, interval_s=5.0, clock=clock)  # no poll before stop()
    sampler.start()
    result = sampler.stop()
    assert result.n_samples == 2
    assert result.energy_j is None
    assert result.reason == (
        "window 0.02 s is shorter than the 25 s this meter needs"
        " (5 sampling periods of 5 s); raise min_time_s"
    )
    assert result.min_window_s == pytest.approx(25.0)


def test_a_meter_that_updates_fast_is_polled_at_its_own_interval():
    clock = FakeClock(step=0.001)
    meter = FunctionMeter(clock, lambda t: 5.0, wanted=40, update_interval_s=0.002)
    sampler = PowerSampler(meter, interval_s=0.1, clock=clock)
    assert sampler.requested_interval_s == 0.1
    assert sampler.interval_s == 0.002
    sampler.start()
    assert meter.enough.wait(WAIT_S)  # 40 reads: at 0.1 s that would take 4 s
    result = sampler.stop()
    assert result.interval_s == 0.002
    assert result.update_interval_s == 0.002
    assert result.min_window_s == pytest.approx(0.01)


def test_a_slow_meter_is_polled_at_the_requested_interval_and_needs_its_updates():
    clock = FakeClock(step=0.05)
    meter = FunctionMeter(clock, lambda t: 5.0, update_interval_s=1.0)  # NVML's 1 s average
    sampler = PowerSampler(meter, interval_s=0.1, clock=clock)
    assert sampler.interval_s == 0.1
    sampler.start()
    result = sampler.stop()
    assert result.min_window_s == pytest.approx(3.0)
    assert "(3 sensor updates of 1 s)" in (result.reason or "")


def test_stop_does_not_wait_out_a_long_interval():
    clock = FakeClock(step=0.05)
    sampler = PowerSampler(FunctionMeter(clock, lambda t: 5.0), interval_s=60.0, clock=clock)
    began = time.monotonic()
    sampler.start()
    sampler.stop()
    assert time.monotonic() - began < WAIT_S  # Event.wait returns at once on stop


def test_context_manager_and_misuse():
    clock = FakeClock(step=0.05)
    meter = FunctionMeter(clock, lambda t: 5.0)
    with PowerSampler(meter, interval_s=0.001, clock=clock) as sampler:
        assert meter.enough.wait(WAIT_S)
    assert sampler.result is not None
    assert sampler.result.mean_w == pytest.approx(5.0)
    assert sampler.stop() is sampler.result  # a second stop returns the same result
    with pytest.raises(RuntimeError):
        sampler.start()
    with pytest.raises(RuntimeError):
        PowerSampler(meter).stop()
    with pytest.raises(ValueError, match="interval_s"):
        PowerSampler(meter, interval_s=0.0)
