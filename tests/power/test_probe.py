"""The one probe loop every finder runs, and the reasons each finder gives through it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from device_agent.power import PowerMeter, PowerReadError, probe, readable
from device_agent.power.hwmon_ina2xx import find_hwmon_ina2xx
from device_agent.power.jetson_ina3221 import find_jetson_ina3221
from device_agent.power.jetson_ina3221x import find_jetson_ina3221x
from device_agent.power.nvml import find_nvml
from device_agent.power.rapl import find_rapl

from .test_nvml import FakeNvml


class Constant(PowerMeter):
    def __init__(self, name: str, fails: bool = False) -> None:
        super().__init__(f"const:{name}", "power", "board")
        self.fails = fails

    def read(self) -> float:
        if self.fails:
            raise PowerReadError("power1_input: No such device")
        return 1.0


def test_probe_keeps_meters_and_reasons_in_candidate_order() -> None:
    def open_one(name: str):
        if name.startswith("skip"):
            return None
        return readable(Constant(name, fails=name.startswith("bad")), f"const {name}")

    meters, reasons = probe(["a", "skip1", "bad1", "b", "bad2"], open_one, "nothing")
    assert [m.source for m in meters] == ["const:a", "const:b"]
    assert reasons == [
        "const bad1: power1_input: No such device",
        "const bad2: power1_input: No such device",
    ]


def test_probe_says_nothing_found_only_when_it_has_neither() -> None:
    assert probe(["skip"], lambda c: None, "const: none here") == ([], ["const: none here"])
    assert probe([], lambda c: None, "const: none here") == ([], ["const: none here"])
    assert probe(["x"], lambda c: "const x: broken", "const: none here") == (
        [],
        ["const x: broken"],
    )


def test_readable_words_the_failure_with_explain() -> None:
    meter = Constant("z", fails=True)
    assert readable(meter, "const", lambda exc: f"gone ({exc.args[0][:12]})") == (
        "const: gone (power1_input)"
    )
    ok = Constant("y")
    assert readable(ok, "const") is ok


HW = "/sys/class/hwmon"
JP5 = "/sys/bus/i2c/drivers/ina3221/1-0040"
JP4 = "/sys/bus/i2c/drivers/ina3221x/6-0040"
RAPL = "/sys/class/powercap"

#: A tree where every finder meets one readable sensor, one broken one and one not its own.
MIXED: Mapping[str, str] = {
    f"{HW}/hwmon0/name": "cpu_thermal",
    f"{HW}/hwmon1/name": "ina226",  # no power1_input
    f"{HW}/hwmon2/name": "ina219",
    f"{HW}/hwmon2/power1_input": "1000000",
    f"{JP5}/hwmon/hwmon3/in1_label": "VDD_IN",
    f"{JP5}/hwmon/hwmon3/in1_input": "5000",
    f"{JP5}/hwmon/hwmon3/curr1_input": "100",
    f"{JP5}/hwmon/hwmon3/in2_label": "VDD_SOC",  # no curr2_input
    f"{JP5}/hwmon/hwmon3/in3_label": "NC",
    f"{JP4}/iio:device0/rail_name_0": "POM_5V_IN",
    f"{JP4}/iio:device0/in_power0_input": "2000",
    f"{JP4}/iio:device0/rail_name_1": "POM_5V_GPU",  # no in_power1_input
    f"{RAPL}/intel-rapl:0/name": "package-0",
    f"{RAPL}/intel-rapl:0/energy_uj": "7",
    f"{RAPL}/intel-rapl:1/name": "package-1",  # no energy_uj
    f"{RAPL}/intel-rapl:2/name": "psys",
}


def _reasons_after_the_path(reasons: list[str]) -> list[str]:
    return [r.split(": ", 1)[0] for r in reasons]


def test_every_finder_keeps_its_meters_and_its_reasons(make_tree) -> None:
    root: Path = make_tree(MIXED)
    meters, reasons = find_hwmon_ina2xx(root)
    assert [m.source.split()[0] for m in meters] == ["hwmon:ina219"]
    assert _reasons_after_the_path(reasons) == ["hwmon ina226 (hwmon1)"]

    meters, reasons = find_jetson_ina3221(root)
    assert [m.rail for m in meters] == ["VDD_IN"]  # type: ignore[attr-defined]
    assert _reasons_after_the_path(reasons) == ["jetson ina3221 VDD_SOC"]

    meters, reasons = find_jetson_ina3221x(root)
    assert [m.rail for m in meters] == ["POM_5V_IN"]  # type: ignore[attr-defined]
    assert _reasons_after_the_path(reasons) == ["jetson ina3221x POM_5V_GPU"]

    meters, reasons = find_rapl(root)
    assert [m.source.split()[0] for m in meters] == ["rapl:package-0"]
    assert reasons == [
        f"rapl: {root}/sys/class/powercap/intel-rapl:1/energy_uj not readable: "
        "No such file or directory"
    ]


class LostSecondGpu(FakeNvml):
    def nvmlDeviceGetName(self, handle):  # noqa: N802 (pynvml names)
        if handle == 1:
            raise self.NVMLError("GPU is lost")
        return super().nvmlDeviceGetName(handle)


def test_nvml_keeps_the_gpus_that_read_and_says_why_not_the_others() -> None:
    meters, reasons = find_nvml(lambda: LostSecondGpu())
    assert [m.source.split()[0] for m in meters] == ["nvml:gpu0"]
    assert reasons == ["nvml gpu1: GPU is lost"]


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        (
            {f"{HW}/hwmon0/name": "cpu_thermal"},
            "hwmon ina2xx: no INA2xx power monitor under /sys/class/hwmon",
        ),
        (
            {f"{JP5}/hwmon/hwmon3/in1_label": "NC"},
            "jetson ina3221 (JetPack 5+): driver present but no labelled channel",
        ),
        (
            {f"{JP4}/iio:device0/in_power0_input": "1"},
            "jetson ina3221x (JetPack 4): driver present but no named rail",
        ),
        ({f"{RAPL}/intel-rapl:0/name": "psys"}, "rapl: no package zone among intel-rapl:0"),
    ],
)
def test_a_finder_that_sees_nothing_of_its_kind_says_so(make_tree, files, reason) -> None:
    root = make_tree(files)
    finders = (find_hwmon_ina2xx, find_jetson_ina3221, find_jetson_ina3221x, find_rapl)
    found = [f(root) for f in finders]
    assert ([], [reason]) in found


def test_nvml_without_gpus_says_so() -> None:
    class NoGpu(FakeNvml):
        def nvmlDeviceGetCount(self):  # noqa: N802 (pynvml names)
            return 0

    assert find_nvml(lambda: NoGpu()) == ([], ["nvml: no GPU"])
