"""RAPL powercap counters: units, wrap value, and why an unreadable counter is left out."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from device_agent.power import integrate
from device_agent.power.rapl import ROOT_ONLY, find_rapl

PC = "/sys/class/powercap"


def _package(index: int, energy_uj: str, max_uj: str = "262143328850") -> dict[str, str]:
    zone = f"{PC}/intel-rapl:{index}"
    return {
        f"{zone}/name": f"package-{index}",
        f"{zone}/energy_uj": energy_uj,
        f"{zone}/max_energy_range_uj": max_uj,
        # a subzone: must not become a meter of its own
        f"{zone}/intel-rapl:{index}:0/name": "core",
        f"{zone}/intel-rapl:{index}:0/energy_uj": "1",
    }


def test_package_counter_is_microjoules_and_wraps_at_max_range(make_tree):
    root = make_tree({**_package(0, "123456789"), **_package(1, "5000000")})
    meters, reasons = find_rapl(root)
    assert reasons == []
    assert [m.source for m in meters] == [
        "rapl:package-0 (CPU package only, not whole board)",
        "rapl:package-1 (CPU package only, not whole board)",
    ]
    assert meters[0].read() == pytest.approx(123.456789)
    assert meters[0].kind == "energy"
    assert meters[0].scope == "cpu-package"
    assert meters[0].wrap_j == pytest.approx(262143.32885)


def test_psys_zone_is_not_taken_for_a_package(make_tree):
    root = make_tree({f"{PC}/intel-rapl:1/name": "psys", f"{PC}/intel-rapl:1/energy_uj": "7"})
    meters, reasons = find_rapl(root)
    assert meters == []
    assert reasons == ["rapl: no package zone among intel-rapl:1"]


def test_no_powercap_gives_a_reason(make_tree):
    meters, reasons = find_rapl(make_tree({}))
    assert meters == []
    assert reasons[0].startswith("rapl: no /sys/class/powercap/intel-rapl:N")


def test_a_counter_that_cannot_be_read_is_left_out_with_the_os_error(make_tree):
    root = make_tree(_package(0, "1"))
    counter = root / "sys/class/powercap/intel-rapl:0/energy_uj"
    counter.unlink()
    counter.mkdir()  # reading a directory fails for root too
    meters, reasons = find_rapl(root)
    assert meters == []
    assert reasons == [f"rapl: {counter} not readable: Is a directory"]


@contextlib.contextmanager
def _world_traversable_dir() -> Iterator[Path]:
    # pytest's tmp_path sits under a 0700 directory that another user cannot enter.
    path = Path(tempfile.mkdtemp(prefix="hwnas-rapl-"))
    try:
        path.chmod(0o755)
        yield path
    finally:
        shutil.rmtree(path)


@contextlib.contextmanager
def _unprivileged() -> Iterator[None]:
    """Root reads mode-000 files anyway; drop to nobody for the block (and back)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_root_only_counter_gives_the_cve_reason():
    with _world_traversable_dir() as root:
        zone = root / "sys/class/powercap/intel-rapl:0"
        zone.mkdir(parents=True)
        for d in (root / "sys", root / "sys/class", root / "sys/class/powercap", zone):
            d.chmod(0o755)
        (zone / "name").write_text("package-0\n")
        (zone / "max_energy_range_uj").write_text("262143328850\n")
        counter = zone / "energy_uj"
        counter.write_text("42\n")
        counter.chmod(0o000)  # what Linux >= 5.10 does for non-root
        with _unprivileged():
            try:
                counter.read_text()
            except PermissionError:
                pass
            else:
                pytest.skip("this process reads mode-000 files even unprivileged (capabilities)")
            meters, reasons = find_rapl(root)
    assert meters == []
    assert reasons == [f"rapl: {counter} not readable ({ROOT_ONLY})"]
    assert "CVE-2020-8694" in reasons[0]


def test_wraparound_inside_a_window_adds_the_range(make_tree):
    # A counter read every 0.1 s that wraps between the 3rd and 4th sample.
    wrap = 262143.32885
    root = make_tree(_package(0, str(int((wrap - 1.5) * 1e6))))
    [meter] = find_rapl(root)[0]
    readings = [wrap - 1.5, wrap - 1.0, wrap - 0.5, 0.0 + 0.25, 0.75, 1.25]
    samples = [(0.1 * i, r) for i, r in enumerate(readings)]
    result = integrate(samples, meter.kind, meter.source, interval_s=0.1, wrap_j=meter.wrap_j)
    assert result.reason is None
    assert result.energy_j == pytest.approx(2.75)  # 1.5 before the wrap + 1.25 after
    assert result.mean_w == pytest.approx(2.75 / 0.5)
