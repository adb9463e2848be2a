"""device_agent.sysinfo against fake /proc and /sys trees, and against this machine.

The trees under tests/data/sysinfo/ copy the file formats of real boards; every expected value
below is worked out by hand from those files (kB / 1024 for memory, kHz / 1000 for clocks,
millidegrees / 1000 for temperatures).
"""

from __future__ import annotations

import json
import platform
import resource
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from device_agent.sysinfo import MemoryProbe, dynamic_state, static_facts, throttle_check

DATA = Path(__file__).parent / "data" / "sysinfo"
RPI5 = DATA / "rpi5"
JETSON_NANO = DATA / "jetson_nano"
X86_NUC = DATA / "x86_nuc"

STATIC_KEYS = {
    "hostname",
    "arch",
    "cpu_model",
    "cores_logical",
    "cores_physical",
    "memory_mb",
    "os",
    "kernel",
    "device_model",
    "jetson_l4t",
    "python",
    "numpy",
    "onnxruntime",
    "onnxruntime_error",
    "providers",
}
DYNAMIC_KEYS = {"governor", "cpu_freq_mhz", "cpu_freq_max_mhz", "temperature_c", "throttled"}


def board_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """The keys of static_facts that come from the tree, not from the interpreter's host."""
    keys = ("cpu_model", "cores_physical", "memory_mb", "os", "device_model", "jetson_l4t")
    return {k: facts[k] for k in keys}


# --- static_facts on fake trees ---------------------------------------------------------


def test_static_facts_raspberry_pi_5() -> None:
    facts = static_facts(RPI5)
    assert set(facts) == STATIC_KEYS
    assert board_facts(facts) == {
        "cpu_model": "ARM Cortex-A76",  # CPU implementer 0x41, CPU part 0xd0b
        "cores_physical": 4,  # no core ids in ARM cpuinfo: 4 distinct thread_siblings_list
        "memory_mb": 8052.6,  # 8245824 kB / 1024 = 8052.5625
        "os": "Debian GNU/Linux 12 (bookworm)",
        "device_model": "Raspberry Pi 5 Model B Rev 1.0",  # trailing NUL stripped
        "jetson_l4t": None,
    }


def test_static_facts_jetson_nano() -> None:
    facts = static_facts(JETSON_NANO)
    assert board_facts(facts) == {
        # cpuinfo's "model name" is the generic "ARMv8 Processor rev 1 (v8l)"; the part wins
        "cpu_model": "ARM Cortex-A57",
        "cores_physical": 2,  # 5 W mode: cpu2 and cpu3 are offline and have no topology/
        "memory_mb": 3964.0,  # 4059116 kB / 1024 = 3963.98046875
        "os": "Ubuntu 18.04.6 LTS",
        "device_model": "NVIDIA Jetson Nano Developer Kit",
        "jetson_l4t": "32.7.1",  # "# R32 (release), REVISION: 7.1, ..."
    }


def test_static_facts_x86_host_with_hyperthreads() -> None:
    facts = static_facts(X86_NUC)
    assert board_facts(facts) == {
        "cpu_model": "Intel(R) Core(TM) i3-7100U CPU @ 2.40GHz",
        "cores_physical": 2,  # (physical id, core id) in {(0, 0), (0, 1)} over 4 processors
        "memory_mb": 15884.8,  # 16266060 kB / 1024 = 15884.82421875
        "os": "Ubuntu 22.04.4 LTS",
        "device_model": "NUC7i3BNH",  # /sys/class/dmi/id/product_name
        "jetson_l4t": None,
    }


def test_static_facts_empty_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "processor", lambda: "")  # as `uname -p` gives on Debian
    facts = static_facts(tmp_path)
    assert board_facts(facts) == {
        "cpu_model": None,
        "cores_physical": None,
        "memory_mb": None,
        "os": platform.platform(),  # documented fallback when there is no os-release
        "device_model": None,
        "jetson_l4t": None,
    }
    json.dumps(facts)


def test_static_facts_root_that_does_not_exist(tmp_path: Path) -> None:
    facts = static_facts(tmp_path / "missing")
    assert facts["memory_mb"] is None
    assert facts["cores_physical"] is None


@pytest.mark.parametrize("processor", ["", "unknown", platform.machine()])
def test_cpu_model_ignores_uname_p_that_names_no_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processor: str
) -> None:
    monkeypatch.setattr(platform, "processor", lambda: processor)
    assert static_facts(tmp_path)["cpu_model"] is None


def test_cpu_model_falls_back_to_platform_processor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platform, "processor", lambda: "Intel64 Family 6 Model 142 Stepping 9")
    assert static_facts(tmp_path)["cpu_model"] == "Intel64 Family 6 Model 142 Stepping 9"


def test_cpu_model_names_each_core_type_of_a_big_little_soc(tmp_path: Path) -> None:
    blocks = [
        f"processor\t: {n}\nCPU implementer\t: 0x41\nCPU part\t: {part}\n"
        for n, part in enumerate(["0xd05"] * 4 + ["0xd0b"] * 4)  # RK3588: 4x A55 + 4x A76
    ]
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("\n".join(blocks))
    assert static_facts(tmp_path)["cpu_model"] == "ARM Cortex-A55 + ARM Cortex-A76"


def test_cores_physical_from_core_id_when_no_siblings_list(tmp_path: Path) -> None:
    for n, core in enumerate([0, 1, 0, 1]):
        topo = tmp_path / f"sys/devices/system/cpu/cpu{n}/topology"
        topo.mkdir(parents=True)
        (topo / "core_id").write_text(f"{core}\n")
        (topo / "physical_package_id").write_text("0\n")
    assert static_facts(tmp_path)["cores_physical"] == 2


@pytest.mark.parametrize(
    ("first_line", "expected"),
    [
        ("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64", "32.7.1"),
        ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64", "35.4.1"),
        ("# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64", "36.3.0"),
        ("something else entirely", None),
    ],
)
def test_jetson_l4t_version(tmp_path: Path, first_line: str, expected: str | None) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text(first_line + "\n# KERNEL_VARIANT: oot\n")
    assert static_facts(tmp_path)["jetson_l4t"] == expected


def test_onnxruntime_import_failure_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    facts = static_facts(tmp_path)
    assert facts["onnxruntime"] is None
    assert facts["providers"] == []
    assert facts["onnxruntime_error"] == (
        "ModuleNotFoundError: import of onnxruntime halted; None in sys.modules"
    )


# --- static_facts / dynamic_state on this machine ---------------------------------------


def test_static_facts_on_this_machine() -> None:
    import numpy
    import onnxruntime

    facts = static_facts(Path("/"))
    assert set(facts) == STATIC_KEYS
    assert facts["onnxruntime"] == version("onnxruntime") == onnxruntime.__version__
    assert facts["onnxruntime_error"] is None
    assert "CPUExecutionProvider" in facts["providers"]
    assert facts["numpy"] == numpy.__version__
    assert facts["python"] == platform.python_version()
    assert facts["arch"] == platform.machine()
    assert json.loads(json.dumps(facts)) == facts


def test_dynamic_state_on_this_machine() -> None:
    state = dynamic_state(Path("/"))
    assert set(state) == DYNAMIC_KEYS
    assert isinstance(state["temperature_c"], dict)
    assert state["throttled"] is None
    assert json.loads(json.dumps(state)) == state


# --- dynamic_state on fake trees ----------------------------------------------------------


def test_dynamic_state_raspberry_pi_5() -> None:
    assert dynamic_state(RPI5) == {
        "governor": "ondemand",
        "cpu_freq_mhz": [2400.0, 2400.0, 2400.0, 2400.0],
        "cpu_freq_max_mhz": [2400.0, 2400.0, 2400.0, 2400.0],
        "temperature_c": {"cpu-thermal": 51.234},  # cooling_device0 is not a zone
        "throttled": None,
    }


def test_dynamic_state_jetson_nano_with_offline_cpus() -> None:
    assert dynamic_state(JETSON_NANO) == {
        "governor": "schedutil",
        "cpu_freq_mhz": [918.0, 918.0, None, None],
        "cpu_freq_max_mhz": [918.0, 918.0, None, None],
        "temperature_c": {
            "AO-therm": 38.5,
            "CPU-therm": 33.0,
            "GPU-therm": 33.5,
            "PLL-therm": 31.0,
            "PMIC-Die": 100.0,
            "thermal-fan-est": 33.1,
        },
        "throttled": None,
    }


def test_dynamic_state_x86_mixed_governors_and_duplicate_zones() -> None:
    assert dynamic_state(X86_NUC) == {
        "governor": {
            "cpu0": "powersave",
            "cpu1": "powersave",
            "cpu2": "powersave",
            "cpu3": "performance",
        },
        "cpu_freq_mhz": [2400.0, 2399.998, 800.034, 2400.0],
        "cpu_freq_max_mhz": [2400.0, 2400.0, 2400.0, 2400.0],
        # the second "acpitz" is thermal_zone1; iwlwifi's temp file is missing
        "temperature_c": {
            "acpitz": 27.8,
            "acpitz#1": 29.8,
            "x86_pkg_temp": 45.0,
            "iwlwifi_1": None,
        },
        "throttled": None,
    }


def test_dynamic_state_empty_tree(tmp_path: Path) -> None:
    expected: dict[str, Any] = {
        "governor": None,
        "cpu_freq_mhz": None,
        "cpu_freq_max_mhz": None,
        "temperature_c": {},
        "throttled": None,
    }
    assert dynamic_state(tmp_path) == expected
    assert dynamic_state(tmp_path / "missing") == expected


def test_dynamic_state_cpus_sorted_numerically(tmp_path: Path) -> None:
    for n in range(12):
        freq = tmp_path / f"sys/devices/system/cpu/cpu{n}/cpufreq"
        freq.mkdir(parents=True)
        (freq / "scaling_cur_freq").write_text(f"{(n + 1) * 100000}\n")
    assert dynamic_state(tmp_path)["cpu_freq_mhz"] == [100.0 * (n + 1) for n in range(12)]


# --- throttle_check ------------------------------------------------------------------------


def snapshot(
    cur: list[float | None] | None, top: list[float | None] | None = None
) -> dict[str, Any]:
    return {
        "governor": "ondemand",
        "cpu_freq_mhz": cur,
        "cpu_freq_max_mhz": top,
        "temperature_c": {},
        "throttled": None,
    }


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        ([2400.0, 2400.0, 2100.0, 2400.0], True),  # 12.5% below start
        ([2400.0, 2400.0, 2200.0, 2400.0], False),  # 8.3%
        ([2400.0, 2400.0, 2160.0, 2400.0], False),  # exactly 10%: not *more than*
        ([2400.0, 2400.0, 2159.0, 2400.0], True),
        ([2800.0, 2800.0, 2800.0, 2800.0], False),  # a rise is no throttle
    ],
)
def test_throttle_check_current_clock(end: list[float | None], expected: bool) -> None:
    assert throttle_check(snapshot([2400.0] * 4), snapshot(end)) is expected


def test_throttle_check_custom_fraction() -> None:
    start, end = snapshot([2400.0]), snapshot([1500.0])  # 37.5% below
    assert throttle_check(start, end, drop_fraction=0.5) is False
    assert throttle_check(start, end, drop_fraction=0.3) is True


def test_throttle_check_skips_cpus_unknown_in_either_snapshot() -> None:
    start = snapshot([918.0, 918.0, None, None])
    assert throttle_check(start, snapshot([918.0, 800.0, None, 100.0])) is True  # 12.9%
    assert throttle_check(start, snapshot([918.0, 918.0, None, 100.0])) is False


def test_throttle_check_lowered_maximum_counts() -> None:
    start = snapshot([1500.0] * 4, [2400.0] * 4)
    end = snapshot([1500.0] * 4, [2400.0, 2400.0, 1800.0, 1800.0])  # a thermal cap
    assert throttle_check(start, end) is True


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (snapshot(None), snapshot(None)),
        (snapshot([2400.0]), snapshot(None)),
        (snapshot([None, None]), snapshot([None, None])),
        ({}, {}),
    ],
)
def test_throttle_check_unknown(start: dict[str, Any], end: dict[str, Any]) -> None:
    assert throttle_check(start, end) is None


def test_throttle_check_on_dynamic_state_snapshots() -> None:
    assert throttle_check(dynamic_state(RPI5), dynamic_state(RPI5)) is False
    assert throttle_check(dynamic_state(JETSON_NANO), dynamic_state(X86_NUC)) is False
    assert throttle_check(dynamic_state(X86_NUC), dynamic_state(JETSON_NANO)) is True


# --- MemoryProbe ---------------------------------------------------------------------------


def test_memory_probe_fake_status_without_clear_refs() -> None:
    probe = MemoryProbe(root=X86_NUC, pid="1234")
    assert probe.rss_mb() == 60.0  # VmRSS 61440 kB
    assert probe.peak_mb() == 79.33203125  # VmHWM 81236 kB
    assert probe.reset_peak() is False
    assert not (X86_NUC / "proc/1234/clear_refs").exists()  # not created by the attempt
    assert probe.source == "VmHWM since process start (clear_refs unavailable)"


def test_memory_probe_writes_5_to_clear_refs(tmp_path: Path) -> None:
    proc = tmp_path / "proc/1234"
    proc.mkdir(parents=True)
    (proc / "status").write_text((X86_NUC / "proc/1234/status").read_text())
    (proc / "clear_refs").write_text("")
    probe = MemoryProbe(root=tmp_path, pid="1234")
    assert probe.reset_peak() is True
    assert (proc / "clear_refs").read_text() == "5"
    assert probe.source == "VmHWM since reset"


def test_memory_probe_other_pid_without_status(tmp_path: Path) -> None:
    probe = MemoryProbe(root=tmp_path, pid="4321")
    assert probe.rss_mb() is None
    assert probe.peak_mb() is None  # ru_maxrss is this process's, never another's
    assert probe.reset_peak() is False


def test_memory_probe_self_falls_back_to_ru_maxrss(tmp_path: Path) -> None:
    probe = MemoryProbe(root=tmp_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak = probe.peak_mb()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert peak is not None
    assert before <= peak <= after
    assert probe.rss_mb() is None
    assert probe.source == "ru_maxrss since process start"


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux procfs")
def test_memory_probe_real_process() -> None:
    probe = MemoryProbe()
    assert probe.reset_peak() is True
    assert probe.source == "VmHWM since reset"
    rss_before = probe.rss_mb()
    assert rss_before is not None

    buf = bytearray(50 * 1024 * 1024)  # calloc'd: untouched pages are not resident yet
    buf[::4096] = b"\x01" * len(range(0, len(buf), 4096))  # touch every page
    peak = probe.peak_mb()
    assert peak is not None
    assert peak >= rss_before + 40
    del buf
    peak_after_free = probe.peak_mb()
    assert peak_after_free is not None
    # Stays: the kernel's RSS counters are approximate (per-CPU), so allow 1 MiB of jitter.
    assert peak_after_free >= peak - 1
    rss_after_free = probe.rss_mb()
    assert rss_after_free is not None
    assert rss_after_free < peak - 40  # the 50 MiB mapping went back to the kernel

    # A second reset forgets the first request's peak.
    assert probe.reset_peak() is True
    peak_after_reset = probe.peak_mb()
    assert peak_after_reset is not None
    assert peak_after_reset < peak - 40
