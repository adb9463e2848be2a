"""Discovery order, selection and reasons, on fake trees and on this machine."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from device_agent.power import SCOPES, CommandNotFoundError, Discovery, discover_meters


def _no_vcgencmd(argv: Sequence[str]) -> str:
    raise CommandNotFoundError("vcgencmd: not found", argv)


def _no_pynvml():
    raise ImportError("No module named 'pynvml'")


class OneGpu:
    def nvmlInit(self):  # noqa: N802 (pynvml names)
        pass

    def nvmlDeviceGetCount(self):  # noqa: N802 (pynvml names)
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):  # noqa: N802 (pynvml names)
        return index

    def nvmlDeviceGetName(self, handle):  # noqa: N802 (pynvml names)
        return "NVIDIA L4"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):  # noqa: N802 (pynvml names)
        return 5000

    def nvmlDeviceGetPowerUsage(self, handle):  # noqa: N802 (pynvml names)
        return 30000


JP5 = "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
EVERYTHING = {
    # discovery looks at these in another order; the result must be by scope
    "/sys/class/powercap/intel-rapl:0/name": "package-0",
    "/sys/class/powercap/intel-rapl:0/energy_uj": "1000000",
    "/sys/class/powercap/intel-rapl:0/max_energy_range_uj": "262143328850",
    f"{JP5}/in1_label": "VDD_CPU_GPU_CV",
    f"{JP5}/in1_input": "5000",
    f"{JP5}/curr1_input": "100",
    f"{JP5}/in2_label": "VDD_IN",
    f"{JP5}/in2_input": "5000",
    f"{JP5}/curr2_input": "1200",
    "/sys/class/hwmon/hwmon4/name": "ina226",
    "/sys/class/hwmon/hwmon4/power1_input": "3000000",
}


def test_meters_come_whole_board_first(make_tree, pmic_output):
    found = discover_meters(
        make_tree(EVERYTHING), lambda argv: pmic_output, nvml_loader=lambda: OneGpu()
    )
    assert [m.scope for m in found.meters] == [
        "board",  # external INA226
        "board",  # Jetson VDD_IN
        "pmic-rails",
        "rail",
        "cpu-package",
        "gpu",
    ]
    assert found.meters[0].source.startswith("hwmon:ina226")
    assert found.meters[1].source.startswith("jetson-ina3221:VDD_IN")
    assert [m.read() for m in found.meters[:2]] == pytest.approx([3.0, 6.0])
    assert all(m.scope in SCOPES and m.kind in ("power", "energy") for m in found.meters)
    # found everything it looked for except the JetPack 4 driver
    assert found.reasons == ["jetson ina3221x (JetPack 4): no /sys/bus/i2c/drivers/ina3221x"]


def test_select_by_exact_source_or_prefix(make_tree, pmic_output):
    found = discover_meters(
        make_tree(EVERYTHING), lambda argv: pmic_output, nvml_loader=lambda: OneGpu()
    )
    assert found.select(None) is found.meters[0]
    assert found.select("rapl") is found.meters[4]
    assert found.select("jetson-ina3221:VDD_IN") is found.meters[1]
    assert found.select(found.meters[3].source) is found.meters[3]
    assert found.select("nvml:gpu0") is found.meters[5]
    assert found.select("tegrastats") is None
    reason = found.unavailable_reason("tegrastats")
    assert reason.startswith("no power meter matches 'tegrastats'; available: hwmon:ina226")


def test_nothing_found_says_why_for_every_kind(make_tree):
    found = discover_meters(make_tree({}), _no_vcgencmd, nvml_loader=_no_pynvml)
    assert found.meters == []
    assert found.select(None) is None
    assert found.select("rapl") is None
    reason = found.unavailable_reason()
    assert reason.startswith("no power sensor found: hwmon ina2xx: no INA2xx power monitor")
    for part in (
        "jetson ina3221 (JetPack 5+)",
        "jetson ina3221x (JetPack 4)",
        "vcgencmd: not found",
        "rapl: no /sys/class/powercap/intel-rapl:N",
        "pynvml: not installed",
    ):
        assert part in reason
    assert "\n" not in reason


def test_empty_discovery_object():
    assert Discovery().unavailable_reason() == "no power sensor found: nothing looked for"


def test_this_machine_never_raises_and_claims_no_board_meter_it_lacks():
    found = discover_meters()  # real "/", real vcgencmd lookup, real pynvml if installed
    assert isinstance(found, Discovery)
    for meter in found.meters:
        assert meter.scope in SCOPES
        assert meter.kind in ("power", "energy")
    has_ina = (
        any(
            (p / "name").is_file() and (p / "name").read_text().strip().startswith("ina")
            for p in Path("/sys/class/hwmon").glob("hwmon*")
        )
        or Path("/sys/bus/i2c/drivers/ina3221").is_dir()
        or Path("/sys/bus/i2c/drivers/ina3221x").is_dir()
    )
    if not has_ina:
        assert all(m.scope != "board" for m in found.meters)
    rapl = [m for m in found.meters if m.scope == "cpu-package"]
    for meter in rapl:
        assert meter.source.startswith("rapl:package-")
    if not found.meters:
        assert found.unavailable_reason().startswith("no power sensor found: ")


# -- a simulated board: meters read under a power_root other than "/" ------------------------

INA226_ONLY = {
    "/sys/class/hwmon/hwmon0/name": "ina226",
    "/sys/class/hwmon/hwmon0/power1_input": "3000000",
    "/sys/class/hwmon/hwmon0/update_interval": "2",
}


def test_meters_read_under_a_fake_root_say_they_are_simulated(make_tree, pmic_output):
    root = make_tree(EVERYTHING)
    found = discover_meters(root, lambda argv: pmic_output, nvml_loader=lambda: OneGpu())
    note = f"; simulated: power_root {root}"
    by_prefix = {m.source.split(":")[0]: m.source for m in found.meters}
    for read_under_root in ("hwmon", "jetson-ina3221", "rapl"):
        assert by_prefix[read_under_root].endswith(note)
        assert by_prefix[read_under_root].count("simulated") == 1
    # vcgencmd and NVML ask the firmware and the driver, not files under the root
    assert "simulated" not in by_prefix["rpi5-pmic"]
    assert "simulated" not in by_prefix["nvml"]
    assert found.root == root
    # the name a user gives still selects by prefix, the full source exactly
    assert found.select("hwmon:ina226") is found.meters[0]
    assert found.select(found.meters[0].source) is found.meters[0]


def test_the_real_root_adds_nothing_to_a_source(make_tree, tmp_path):
    # "/" itself, and a link to it, are the board's own /sys
    link = tmp_path / "slash"
    link.symlink_to("/")
    for root in (Path("/"), link):
        found = discover_meters(root, _no_vcgencmd, nvml_loader=lambda: OneGpu())
        assert found.meters, "NVML's fake GPU is always there"
        assert all("simulated" not in m.source for m in found.meters)


# -- the meter for the work: a GPU's meter does not see a model on the CPU ---------------------


def test_nvml_alone_is_not_chosen_for_the_cpu_provider(make_tree):
    found = discover_meters(make_tree({}), _no_vcgencmd, nvml_loader=lambda: OneGpu())
    [gpu] = found.meters
    assert found.select(None, "CPUExecutionProvider") is None
    assert found.unavailable_reason(None, "CPUExecutionProvider") == (
        "the only meter is NVML (GPU power) and the model runs on the CPU; name it to use it anyway"
    )
    assert found.select("nvml", "CPUExecutionProvider") is gpu  # named: used anyway
    assert found.select(None, "CUDAExecutionProvider") is gpu
    assert found.select(None) is gpu  # no provider given: as before


def test_for_the_cpu_the_next_meter_after_nvml_is_chosen(make_tree):
    rapl = {k: v for k, v in EVERYTHING.items() if "powercap" in k}
    found = discover_meters(make_tree(rapl), _no_vcgencmd, nvml_loader=lambda: OneGpu())
    assert [m.scope for m in found.meters] == ["cpu-package", "gpu"]
    assert found.select(None, "CPUExecutionProvider") is found.meters[0]
    # meters sort whole board first, so a GPU meter is never ahead of a board meter
    tree = make_tree(INA226_ONLY)
    found = discover_meters(tree, _no_vcgencmd, nvml_loader=lambda: OneGpu())
    chosen = found.select(None, "CPUExecutionProvider")
    assert chosen is not None
    assert chosen.source.startswith("hwmon:ina226")


def test_without_any_meter_the_cpu_reason_is_the_usual_one(make_tree):
    found = discover_meters(make_tree({}), _no_vcgencmd, nvml_loader=_no_pynvml)
    assert found.unavailable_reason(None, "CPUExecutionProvider").startswith(
        "no power sensor found: hwmon ina2xx:"
    )
