"""The example plugin, installed as a real package: its profile, its power reader running
inside the agent (locally and, packed into the zipapp, over SSH), and the conformance suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hwnas_bench.testing import SSHServer

from .plugin_site import pip_install_target

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "hwnas-plugin-acme"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install --target`` of the example: a real dist-info with its entry point."""
    return pip_install_target(EXAMPLE, tmp_path_factory.mktemp("site"), "hwnas_plugin_acme")


def run(installed: Path, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def test_conformance_suite_passes(installed: Path) -> None:
    result = run(
        installed,
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(EXAMPLE / "tests"),
        cwd=EXAMPLE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 passed, 1 skipped" in result.stdout  # transports: not implemented by this plugin


def test_profile_appears_in_the_database(installed: Path) -> None:
    result = run(
        installed, sys.executable, "-m", "hwnas_bench.cli.main", "targets", "show", "acme-edge-1"
    )
    assert result.returncode == 0, result.stderr
    assert "ACME Edge-1 (example)" in result.stdout
    env_off = run(
        installed,
        "env",
        "HWNAS_DISABLE_PLUGIN_AUTOLOAD=1",
        sys.executable,
        "-m",
        "hwnas_bench.cli.main",
        "targets",
        "show",
        "acme-edge-1",
    )
    assert env_off.returncode == 2  # autoload off: the plugin is not loaded


def test_power_reader_runs_inside_the_local_agent(installed: Path, tmp_path: Path) -> None:
    supply = tmp_path / "fake/sys/class/power_supply/usb-pd"
    supply.mkdir(parents=True)
    (supply / "power_now").write_text("4200000\n")
    config = tmp_path / "hwnas.toml"
    config.write_text(f'[boards.acme]\ntransport = "local"\npower_root = "{tmp_path / "fake"}"\n')
    out = tmp_path / "m.json"
    result = run(
        installed,
        sys.executable,
        "-m",
        "hwnas_bench.cli.main",
        "bench",
        str(ROOT / "examples/models/convnet.onnx"),
        "--target",
        "acme",
        "--config",
        str(config),
        "--min-time",
        "1",
        "--json",
        str(out),
        "-q",
    )
    assert result.returncode == 0, result.stderr
    power = json.loads(out.read_text())["power"]
    # A power_root other than / is a simulated tree: the source says so.
    assert power["source"] == (
        "power_supply:usb-pd (what this supply delivers); "
        f"simulated: power_root {tmp_path / 'fake'}"
    )
    assert power["mean_w"] == pytest.approx(4.2)


def test_power_reader_travels_in_the_zipapp_over_ssh(
    installed: Path, sshd: SSHServer, tmp_path: Path
) -> None:
    config = tmp_path / "hwnas.toml"
    config.write_text(sshd.board_toml("remote"))
    result = run(
        installed,
        sys.executable,
        "-m",
        "hwnas_bench.cli.main",
        "agent",
        "ping",
        "remote",
        "--config",
        str(config),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    # The board has no power_supply class; the reason proves the plugin ran there, from the
    # zipapp (the SSH session does not inherit this test's PYTHONPATH).
    facts = json.loads(result.stdout)
    assert "plugin hwnas_acme.power_supply: power_supply:" in facts["power_unavailable"]
