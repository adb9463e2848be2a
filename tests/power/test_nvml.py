"""NVML through a small fake module holding recorded values (no GPU, no pynvml needed)."""

from __future__ import annotations

import pytest

from device_agent.power import PowerReadError
from device_agent.power.nvml import find_nvml


class NVMLError(Exception):
    pass


class FakeNvml:
    """The handful of pynvml calls the reader uses; GPU 0 is Volta+, GPU 1 is older."""

    NVMLError = NVMLError

    def __init__(self, energy_mj=(1_000_000, 0), power_mw=(250_000, 70_000), init_fails=False):
        self.energy_mj = list(energy_mj)
        self.power_mw = list(power_mw)
        self.init_fails = init_fails

    def nvmlInit(self):  # noqa: N802 (pynvml names)
        if self.init_fails:
            raise NVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self):  # noqa: N802 (pynvml names)
        return 2

    def nvmlDeviceGetHandleByIndex(self, index):  # noqa: N802 (pynvml names)
        return index

    def nvmlDeviceGetName(self, handle):  # noqa: N802 (pynvml names)
        return [b"NVIDIA H200", "Tesla P4"][handle]  # old pynvml gives bytes

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):  # noqa: N802 (pynvml names)
        if handle == 1:
            raise NVMLError("Not Supported")
        return self.energy_mj[handle]

    def nvmlDeviceGetPowerUsage(self, handle):  # noqa: N802 (pynvml names)
        return self.power_mw[handle]


def test_energy_counter_preferred_power_as_fallback():
    fake = FakeNvml()
    meters, reasons = find_nvml(lambda: fake)
    assert reasons == []
    h200, p4 = meters
    assert h200.kind == "energy"
    assert h200.read() == pytest.approx(1000.0)  # 1 000 000 mJ
    assert h200.wrap_j is None
    assert h200.source == "nvml:gpu0 (NVIDIA H200) total energy counter, GPU board only"
    assert p4.kind == "power"
    assert p4.read() == pytest.approx(70.0)  # 70 000 mW
    assert p4.update_interval_s == 1.0  # a 1 s average on Ampere+
    assert {m.scope for m in meters} == {"gpu"}


def test_a_failing_read_becomes_power_read_error():
    fake = FakeNvml()
    [h200, _] = find_nvml(lambda: fake)[0]

    def lost(handle):
        raise NVMLError("GPU is lost")

    fake.nvmlDeviceGetTotalEnergyConsumption = lost  # type: ignore[method-assign]
    with pytest.raises(PowerReadError, match="GPU is lost"):
        h200.read()


def test_absent_pynvml_and_absent_driver_are_reasons():
    def not_installed():
        raise ImportError("No module named 'pynvml'")

    assert find_nvml(not_installed) == ([], ["pynvml: not installed"])
    assert find_nvml(lambda: FakeNvml(init_fails=True)) == (
        [],
        ["nvml: not usable (Driver Not Loaded)"],
    )
