"""Raspberry Pi 5 PMIC through ``vcgencmd pmic_read_adc``, on recorded output."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from device_agent.power import CommandError, CommandNotFoundError, PowerReadError
from device_agent.power._io import run_subprocess
from device_agent.power.rpi5_pmic import find_rpi5_pmic, parse_pmic_adc

# (amps, volts) of each pair in tests/data/power/rpi5_pmic_read_adc.txt, copied by hand.
PAIRS = {
    "3V7_WL_SW": (0.09368929, 3.69977600),
    "3V3_SYS": (0.08783370, 3.31003300),
    "1V8_SYS": (0.18054710, 1.80512600),
    "DDR_VDD2": (0.22543980, 1.10476100),
    "DDR_VDDQ": (0.06666720, 0.60146460),
    "1V1_SYS": (0.17566740, 1.11025500),
    "0V8_SW": (0.37670900, 0.80146440),
    "VDD_CORE": (6.22421000, 0.86173300),
    "3V3_DAC": (0.00006105, 3.31318300),
    "3V3_ADC": (0.00036630, 3.30677300),
    "0V8_AON": (0.00305250, 0.80029220),
    "HDMI": (0.02417580, 5.08664000),
}


class Recorded:
    """A command runner that answers with recorded text and counts calls."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        return self.text


def test_pairs_are_matched_by_rail_name_and_voltage_only_channels_dropped(pmic_output):
    rails = parse_pmic_adc(pmic_output)
    assert set(rails) == set(PAIRS)  # 12 pairs; EXT5V and BATT have no current
    assert rails["VDD_CORE"] == pytest.approx(6.22421 * 0.861733)  # 5.3636 W
    for rail, (amps, volts) in PAIRS.items():
        assert rails[rail] == pytest.approx(amps * volts)


def test_meter_sums_the_rails_and_says_what_it_leaves_out(pmic_output):
    runner = Recorded(pmic_output)
    meters, reasons = find_rpi5_pmic(runner)
    assert reasons == []
    [meter] = meters
    assert meter.source == (
        "rpi5-pmic: sum of 12 PMIC rails (excludes the 5 V side: USB, HATs, NVMe)"
    )
    assert meter.scope == "pmic-rails"
    assert meter.kind == "power"
    assert meter.read() == pytest.approx(sum(a * v for a, v in PAIRS.values()))
    assert meter.read() == pytest.approx(7.2398, abs=1e-4)
    assert runner.calls[-1] == ["vcgencmd", "pmic_read_adc"]


def test_the_brief_line_format_with_wide_padding_parses():
    text = "     VDD_CORE_A current(7)=0.92871990A\n     VDD_CORE_V volt(15)=0.72097620V\n"
    assert parse_pmic_adc(text) == {"VDD_CORE": pytest.approx(0.92871990 * 0.72097620)}


def test_unpaired_and_garbage_lines_are_ignored():
    text = "  ONLY_A current(1)=1.0A\n  EXT5V_V volt(24)=5.1V\nthrottled=0x0\n"
    assert parse_pmic_adc(text) == {}


def test_a_changed_rail_set_mid_window_is_a_read_error(pmic_output):
    runner = Recorded(pmic_output)
    [meter] = find_rpi5_pmic(runner)[0]
    runner.text = "\n".join(line for line in pmic_output.splitlines() if "HDMI" not in line)
    with pytest.raises(PowerReadError, match="11 rails, expected 12"):
        meter.read()


def test_command_failure_during_a_read_is_a_read_error(pmic_output):
    runner = Recorded(pmic_output)
    [meter] = find_rpi5_pmic(runner)[0]

    def broken(argv: Sequence[str]) -> str:
        raise CommandError("`vcgencmd pmic_read_adc` timed out after 2 s", argv)

    meter._run = broken  # type: ignore[attr-defined]
    with pytest.raises(PowerReadError, match="timed out"):
        meter.read()


def test_missing_vcgencmd_is_a_reason():
    def missing(argv: Sequence[str]) -> str:
        raise CommandNotFoundError("vcgencmd: not found", argv)

    assert find_rpi5_pmic(missing) == ([], ["vcgencmd: not found"])


def test_firmware_without_the_command_is_a_reason():
    meters, reasons = find_rpi5_pmic(Recorded('error=1 error_msg="Command not registered"\n'))
    assert meters == []
    assert reasons == [
        "vcgencmd pmic_read_adc: no current/voltage rail pairs"
        ' (error=1 error_msg="Command not registered")'
    ]


def test_default_runner_reports_missing_failing_and_working_commands():
    with pytest.raises(CommandNotFoundError, match="not found"):
        run_subprocess(["hwnas-no-such-command-xyz"])
    with pytest.raises(CommandError, match="exited 3: boom"):
        run_subprocess(["sh", "-c", "echo boom >&2; exit 3"])
    assert run_subprocess(["sh", "-c", "echo ok"]) == "ok\n"


def test_default_runner_times_out_after_two_seconds():
    with pytest.raises(CommandError, match="timed out after 2 s"):
        run_subprocess(["sleep", "10"])
