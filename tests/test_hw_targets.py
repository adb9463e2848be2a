"""The hardware database: built-in profiles, the schema, the plugin manager, the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import hw_targets
from hw_targets import ProfileError, hookimpl, load_profile, profile_from_dict
from hw_targets.profile import builtin_profile_files
from hwnas_bench.cli.main import main

BUILTIN = {
    "raspberry-pi-4",
    "raspberry-pi-5",
    "jetson-nano",
    "jetson-orin-nano",
    "jetson-agx-orin",
    "kria-kv260",
    "generic-x86-64",
}


def test_every_builtin_profile_loads_and_cites_its_sources() -> None:
    files = builtin_profile_files()
    assert {p.stem for p in files} == BUILTIN
    for path in files:
        profile = load_profile(path)
        assert profile.name == path.stem
        assert "CPUExecutionProvider" in profile.execution_providers
        assert "source" in path.read_text().lower()  # values carry their sources


def test_facts_that_users_rely_on() -> None:
    profiles = {p.stem: load_profile(p) for p in builtin_profile_files()}
    assert profiles["raspberry-pi-5"].cpu.microarchitecture == "Cortex-A76"
    assert profiles["raspberry-pi-5"].power.sensors == ("rpi5-pmic",)
    assert profiles["jetson-agx-orin"].cpu.cores == 12
    assert "VitisAIExecutionProvider" in profiles["kria-kv260"].execution_providers
    assert {m.name for m in profiles["jetson-nano"].power.modes} >= {"MAXN", "5W"}
    assert profiles["raspberry-pi-4"].power.sensors == ()  # none built in


def minimal(**over: object) -> dict:
    data = {
        "name": "x",
        "display_name": "X",
        "vendor": "v",
        "cpu": {"arch": "aarch64", "cores": 4, "max_clock_mhz": 1000, "microarchitecture": "A55"},
        "memory": {"total_mb": 1024},
    }
    data.update(over)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            minimal(cpu={"arch": "aarch64", "cores": 4, "max_clock_mhz": 1, "microarch": "A55"}),
            "key 'cpu.microarch': unknown field (did you mean 'microarchitecture'?)",
        ),
        (
            minimal(cpu={"arch": "arm", "cores": 4, "max_clock_mhz": 1, "microarchitecture": "A"}),
            "key 'cpu.arch': 'arm' is not one of",
        ),
        (minimal(memory={"total_mb": -1}), "key 'memory.total_mb': must be a positive integer"),
        (minimal(execution_providers=["CUDAExecutionProvider"]), "must list CPUExecutionProvider"),
        (minimal(accelerators=[{"name": "g", "kind": "magic"}]), "'magic' is not one of"),
        ({"name": "x"}, "key 'display_name': required"),
        (minimal(colour="red"), "key 'colour': unknown field"),
    ],
)
def test_schema_mistakes_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ProfileError) as info:
        profile_from_dict(data, "my.toml")
    assert str(info.value).startswith("my.toml: ")
    assert message in str(info.value)


class ExtraProfiles:
    @hookimpl
    def hwnas_hardware_profiles(self) -> list:
        return [profile_from_dict(minimal(name="extra-board"), "extra.toml")]


def test_plugin_profiles_join_the_database_and_duplicates_are_refused() -> None:
    pm = hw_targets.get_plugin_manager()
    plugin = ExtraProfiles()
    pm.register(plugin, "test-extra")
    try:
        assert "extra-board" in hw_targets.hardware_profiles()
        twin = ExtraProfiles()
        pm.register(twin, "test-twin")
        with pytest.raises(hw_targets.PluginError, match="profile 'extra-board' is defined twice"):
            hw_targets.hardware_profiles()
        pm.unregister(twin)
    finally:
        pm.unregister(plugin)


def test_autoload_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hw_targets.DISABLE_AUTOLOAD_ENV, "1")
    hw_targets.reset_plugin_manager()
    try:
        pm = hw_targets.get_plugin_manager()
        assert [name for name, _ in pm.list_name_plugin()] == ["hw_targets.builtin"]
    finally:
        hw_targets.reset_plugin_manager()


def test_local_profile_is_detected_from_hello() -> None:
    facts = {
        "hostname": "pi",
        "arch": "aarch64",
        "cores_physical": 4,
        "cores_logical": 4,
        "cpu_model": "ARM Cortex-A76",
        "memory_mb": 8063.2,
        "providers": ["CPUExecutionProvider"],
        "cpu_freq_max_mhz": [2400.0, 2400.0, None, 2400.0],
        "device_model": "Raspberry Pi 5 Model B Rev 1.0",
        "power_meters": [{"source": "rpi5-pmic: sum of 12 PMIC rails (...)"}],
    }
    profile = hw_targets.profile_from_facts("local", facts)
    assert profile.cpu.cores == 4
    assert profile.cpu.max_clock_mhz == 2400.0
    assert profile.power.sensors == ("rpi5-pmic",)
    assert hw_targets.match_profile(facts) == "raspberry-pi-5"


def test_targets_list_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets", "list"]) == 0
    out = capsys.readouterr().out
    for name in BUILTIN:
        assert name in out
    assert main(["targets", "show", "jetson-orin-nano"]) == 0
    out = capsys.readouterr().out
    assert "cpu.microarchitecture" in out
    assert "Cortex-A78AE" in out
    assert main(["targets", "show", "local"]) == 0
    out = capsys.readouterr().out
    assert "detected" in out
    assert "closest built-in profile: generic-x86-64" in out


def test_targets_show_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets", "show", "raspbery-pi-5"]) == 2
    err = capsys.readouterr().err
    assert "no profile or board named 'raspbery-pi-5' (did you mean 'raspberry-pi-5'?)" in err


def test_farm_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "hwnas.toml"
    config.write_text('[boards.a]\ntransport = "local"\ntags = ["cpu"]\n')
    assert main(["farm", "status", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "free" in out
    assert "cpu" in out


LOCAL_PATH = re.compile(
    r"(/work|/home|/tmp|site-packages|~/|\b[\w./-]+\.(py|md|adoc|c|rst)\b(?!\w))"
)


def _source_notes(text: str) -> list[tuple[int, str]]:
    """Each ``# source...`` comment with its continuation lines, as (line number, text)."""
    notes: list[tuple[int, str]] = []
    current: list[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("# source"):
            current = [stripped[1:].strip()]
            notes.append((number, ""))
        elif stripped.startswith("#") and current is not None:
            current.append(stripped[1:].strip())
        else:
            if current is not None:
                notes[-1] = (notes[-1][0], " ".join(current))
            current = None
    return notes


def test_profile_sources_are_public_documents_never_local_paths() -> None:
    """Every source is a URL or a named public document: a path on the machine that wrote
    the profile is no source anyone else can check."""
    for path in builtin_profile_files():
        text = path.read_text()
        notes = _source_notes(text)
        assert notes, path
        for number, note in notes:
            without_urls = re.sub(r"https?://\S+", "", note)
            bad = LOCAL_PATH.search(without_urls)
            assert bad is None, f"{path.name}:{number}: source cites {bad[0]!r}: {note}"
        for number, line in enumerate(text.splitlines(), 1):  # comments outside sources too
            if line.lstrip().startswith("#"):
                assert not re.search(r"/work/|/home/|site-packages", line), f"{path.name}:{number}"


def test_a_plugin_that_cannot_be_imported_is_one_line(tmp_path: Path) -> None:
    """An installed package whose `hwnas` entry point does not import: `hwnas` says which
    plugin and package, how to get past it, and exits 2, with no traceback."""
    import os
    import subprocess
    import sys

    dist = tmp_path / "site" / "broken_board-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-board\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hwnas]\nbroken = no_such_module_for_hwnas\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    env.pop(hw_targets.DISABLE_AUTOLOAD_ENV, None)
    result = subprocess.run(
        [sys.executable, "-m", "hwnas_bench.cli.main", "targets", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "cannot be loaded: ModuleNotFoundError" in line
    assert hw_targets.DISABLE_AUTOLOAD_ENV in line
    assert "Traceback" not in result.stderr
