"""The sysfs readers for INA2xx (hwmon) and the two Jetson INA3221 drivers."""

from __future__ import annotations

import pytest

from device_agent.power import PowerReadError, PowerSampler
from device_agent.power.hwmon_ina2xx import find_hwmon_ina2xx
from device_agent.power.jetson_ina3221 import find_jetson_ina3221
from device_agent.power.jetson_ina3221x import find_jetson_ina3221x

HW = "/sys/class/hwmon"
JP5 = "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon2"
JP4 = "/sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"


def test_ina226_power_is_microwatts_and_update_interval_is_ms(make_tree):
    root = make_tree(
        {
            f"{HW}/hwmon0/name": "cpu_thermal",
            f"{HW}/hwmon0/temp1_input": "45000",
            f"{HW}/hwmon3/name": "ina226",
            f"{HW}/hwmon3/power1_input": "4250000",
            f"{HW}/hwmon3/update_interval": "35",
        }
    )
    meters, reasons = find_hwmon_ina2xx(root)
    assert reasons == []
    [meter] = meters
    assert meter.read() == pytest.approx(4.25)  # 4 250 000 µW
    assert meter.kind == "power"
    assert meter.scope == "board"
    assert meter.update_interval_s == pytest.approx(0.035)
    assert meter.source == "hwmon:ina226 (hwmon3) power1_input, board supply (as wired)"


def test_ina219_has_no_update_interval_and_hwmon_order_is_natural(make_tree):
    root = make_tree(
        {
            f"{HW}/hwmon10/name": "ina219",
            f"{HW}/hwmon10/power1_input": "1000000",
            f"{HW}/hwmon2/name": "ina219",
            f"{HW}/hwmon2/power1_input": "2000000",
        }
    )
    meters, _ = find_hwmon_ina2xx(root)
    assert [m.source.split()[1] for m in meters] == ["(hwmon2)", "(hwmon10)"]
    assert [m.read() for m in meters] == [2.0, 1.0]
    assert all(m.update_interval_s is None for m in meters)


def test_unreadable_ina_becomes_a_reason_and_absent_ina_says_so(make_tree):
    root = make_tree({f"{HW}/hwmon1/name": "ina226"})  # no power1_input
    meters, reasons = find_hwmon_ina2xx(root)
    assert meters == []
    assert len(reasons) == 1
    assert reasons[0].startswith("hwmon ina226 (hwmon1):")
    assert "power1_input" in reasons[0]

    meters, reasons = find_hwmon_ina2xx(make_tree({}))
    assert meters == []
    assert reasons[0].startswith("hwmon ina2xx: no INA2xx power monitor")


def test_a_read_that_stops_working_raises_power_read_error(make_tree):
    root = make_tree({f"{HW}/hwmon3/name": "ina260", f"{HW}/hwmon3/power1_input": "5"})
    [meter] = find_hwmon_ina2xx(root)[0]
    (root / "sys/class/hwmon/hwmon3/power1_input").write_text("garbage\n")
    with pytest.raises(PowerReadError, match="not an integer"):
        meter.read()
    (root / "sys/class/hwmon/hwmon3/power1_input").unlink()
    with pytest.raises(PowerReadError, match="power1_input"):
        meter.read()


def _jp5_orin_tree():
    # Orin NX style: VDD_IN, VDD_CPU_GPU_CV, VDD_SOC on channels 1..3; in7 is the sum of
    # shunt voltages, in4..in6 shunt voltages in µV: none of those may become a rail.
    return {
        f"{JP5}/name": "ina3221",
        f"{JP5}/update_interval": "5",
        f"{JP5}/in1_label": "VDD_IN",
        f"{JP5}/in1_input": "5000",
        f"{JP5}/curr1_input": "1200",
        f"{JP5}/in2_label": "VDD_CPU_GPU_CV",
        f"{JP5}/in2_input": "4984",
        f"{JP5}/curr2_input": "250",
        f"{JP5}/in3_label": "VDD_SOC",
        f"{JP5}/in3_input": "4992",
        f"{JP5}/curr3_input": "500",
        f"{JP5}/in4_input": "12000",
        f"{JP5}/in7_label": "sum of shunt voltages",
        f"{JP5}/in7_input": "30000",
        f"{JP5}/curr4_input": "1950",
    }


def test_jp5_power_is_bus_mv_times_ma(make_tree):
    meters, reasons = find_jetson_ina3221(make_tree(_jp5_orin_tree()))
    assert reasons == []
    assert [m.rail for m in meters] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]  # type: ignore[attr-defined]
    vdd_in, cpu, soc = meters
    assert vdd_in.read() == pytest.approx(6.0)  # 5000 mV × 1200 mA
    assert cpu.read() == pytest.approx(1.246)  # 4984 mV × 250 mA
    assert soc.read() == pytest.approx(2.496)  # 4992 mV × 500 mA
    assert [m.scope for m in meters] == ["board", "rail", "rail"]
    assert vdd_in.source.startswith("jetson-ina3221:VDD_IN (module power input;")
    assert "not the whole board" in cpu.source
    assert all(m.update_interval_s == pytest.approx(0.005) for m in meters)


def test_jp5_skips_nc_channels_and_reports_an_unreadable_one(make_tree):
    tree = _jp5_orin_tree()
    tree[f"{JP5}/in3_label"] = "NC"
    del tree[f"{JP5}/curr2_input"]  # a disabled channel: the kernel gives no reading
    meters, reasons = find_jetson_ina3221(make_tree(tree))
    assert [m.rail for m in meters] == ["VDD_IN"]  # type: ignore[attr-defined]
    assert len(reasons) == 1
    assert reasons[0].startswith("jetson ina3221 VDD_CPU_GPU_CV:")


def test_jp4_nano_rails_are_milliwatts(make_tree):
    root = make_tree(
        {
            f"{JP4}/rail_name_0": "POM_5V_IN",
            f"{JP4}/in_power0_input": "2132",
            f"{JP4}/rail_name_1": "POM_5V_GPU",
            f"{JP4}/in_power1_input": "78",
            f"{JP4}/rail_name_2": "POM_5V_CPU",
            f"{JP4}/in_power2_input": "474",
        }
    )
    meters, reasons = find_jetson_ina3221x(root)
    assert reasons == []
    assert [m.read() for m in meters] == pytest.approx([2.132, 0.078, 0.474])
    assert [m.scope for m in meters] == ["board", "rail", "rail"]
    assert meters[0].source.startswith("jetson-ina3221:POM_5V_IN (module power input;")
    assert all(m.update_interval_s is None for m in meters)


def test_jp4_channel_without_rail_name_is_not_connected(make_tree):
    root = make_tree({f"{JP4}/rail_name_1": "VDD_IN", f"{JP4}/in_power1_input": "3000"})
    meters, _ = find_jetson_ina3221x(root)
    assert [m.read() for m in meters] == [3.0]


def test_absent_jetson_drivers_give_reasons(make_tree):
    root = make_tree({})
    assert find_jetson_ina3221(root) == (
        [],
        ["jetson ina3221 (JetPack 5+): no /sys/bus/i2c/drivers/ina3221"],
    )
    assert find_jetson_ina3221x(root)[1] == [
        "jetson ina3221x (JetPack 4): no /sys/bus/i2c/drivers/ina3221x"
    ]


def test_iio_hwmon_bridge_name_with_node_suffix_is_recognised(make_tree):
    # Kria KV260: the SOM's INA260 reaches hwmon through iio-hwmon, named after its DT node
    root = make_tree({f"{HW}/hwmon1/name": "ina260_u14", f"{HW}/hwmon1/power1_input": "3100000"})
    [meter], _ = find_hwmon_ina2xx(root)
    assert meter.read() == pytest.approx(3.1)
    assert meter.source.startswith("hwmon:ina260_u14 (hwmon1)")


def test_other_chips_with_underscores_are_not_taken(make_tree):
    root = make_tree({f"{HW}/hwmon1/name": "nct6775_isa", f"{HW}/hwmon1/power1_input": "1"})
    meters, reasons = find_hwmon_ina2xx(root)
    assert meters == []
    assert reasons


def test_the_simulated_ina226_layout_gives_the_meter_its_update_interval(make_tree):
    # hwnas_bench.testing's simulated meter: hwmon0 with name, power1_input (µW) and
    # update_interval (ms), as the ina2xx driver registers one
    root = make_tree(
        {
            f"{HW}/hwmon0/name": "ina226",
            f"{HW}/hwmon0/power1_input": "2500000",
            f"{HW}/hwmon0/update_interval": "5",
        }
    )
    [meter], reasons = find_hwmon_ina2xx(root)
    assert reasons == []
    assert meter.update_interval_s == pytest.approx(0.005)
    sampler = PowerSampler(meter, interval_s=0.1)
    assert sampler.interval_s == pytest.approx(0.005)  # polled as often as it changes


def test_an_unreadable_or_zero_update_interval_claims_none(make_tree):
    for text in ("0", "garbage"):
        root = make_tree(
            {
                f"{HW}/hwmon0/name": "ina226",
                f"{HW}/hwmon0/power1_input": "1",
                f"{HW}/hwmon0/update_interval": text,
            }
        )
        [meter], _ = find_hwmon_ina2xx(root)
        assert meter.update_interval_s is None
