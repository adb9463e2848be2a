"""A conformance suite for hwnas plugins, to run in the plugin's own tests.

In the plugin package's test module::

    from hwnas_bench.testing.conformance import *  # noqa: F403

    @pytest.fixture
    def hwnas_plugin():
        import my_plugin.plugin
        return my_plugin.plugin          # the object the entry point names

    @pytest.fixture
    def power_root(tmp_path):           # only if the plugin adds power readers:
        ...                             # a fake /sys where they find a meter
        return tmp_path

Tests for hook kinds the plugin does not implement are skipped. The power-reader tests
import ``device_agent.power``: a reader runs inside the agent, so it is checked against the
agent's own interface.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from hw_targets import HardwareProfile, PowerReaderPlugin, TransportPlugin
from hw_targets.profile import builtin_profile_files, load_profile

__all__ = [
    "power_root",
    "test_hooks_match_the_specs",
    "test_plugin_is_published_under_the_entry_point",
    "test_power_readers_are_packed_into_the_agent",
    "test_power_readers_find_and_read_meters",
    "test_power_readers_integrate_to_energy",
    "test_power_readers_report_absence_without_raising",
    "test_power_readers_use_only_what_a_board_has",
    "test_profiles_are_valid_and_new",
    "test_transports_follow_the_contract",
]


@pytest.fixture
def power_root() -> Path | None:
    """Override with a fake /sys tree in which the plugin's readers find a meter."""
    return None


def _impl(plugin: Any, hook: str) -> list[Any]:
    function = getattr(plugin, hook, None)
    if function is None:
        pytest.skip(f"the plugin does not implement {hook}")
    return list(function() or ())


def test_plugin_is_published_under_the_entry_point(hwnas_plugin: Any) -> None:
    loaded = [ep.load() for ep in importlib.metadata.entry_points(group="hwnas")]
    assert hwnas_plugin in loaded, (
        "the plugin is not installed under the 'hwnas' entry-point group; add "
        "[project.entry-points.hwnas] name = 'your_package.plugin' and pip install it"
    )


def test_hooks_match_the_specs(hwnas_plugin: Any) -> None:
    import pluggy

    from hw_targets import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(hwnas_plugin, "plugin-under-test")  # raises for a wrong signature
    pm.check_pending()  # raises for a hook implementation with no spec (a typo)


def test_profiles_are_valid_and_new(hwnas_plugin: Any) -> None:
    profiles = _impl(hwnas_plugin, "hwnas_hardware_profiles")
    assert profiles, "hwnas_hardware_profiles returned nothing"
    builtin = {load_profile(p).name for p in builtin_profile_files()}
    names = [p.name for p in profiles]
    assert len(names) == len(set(names)), f"duplicate profile names: {names}"
    for profile in profiles:
        assert isinstance(profile, HardwareProfile)
        assert profile.name not in builtin, f"{profile.name} shadows a built-in profile"
        assert profile.name == profile.name.lower()
        assert " " not in profile.name
        assert profile.summary()


def _readers(plugin: Any) -> list[PowerReaderPlugin]:
    readers = _impl(plugin, "hwnas_power_readers")
    assert all(isinstance(r, PowerReaderPlugin) for r in readers)
    return readers


def _failing_runner(argv: Any) -> str:
    from device_agent.power import CommandNotFoundError

    raise CommandNotFoundError(f"{argv[0]}: not found (conformance test)", argv)


#: Standard-library modules newer than the oldest Python a board runs (3.8).
_NEWER_STDLIB = {"graphlib", "tomllib", "zoneinfo", "_tomllib"}


def _reader_files(module: str) -> list[Path]:
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"cannot find module {module}"
    assert spec.origin, f"module {module} has no source file"
    if spec.submodule_search_locations:  # a package: every file of it travels
        return sorted(Path(spec.origin).parent.rglob("*.py"))
    return [Path(spec.origin)]


def test_power_readers_use_only_what_a_board_has(hwnas_plugin: Any) -> None:
    """A reader is copied to the board alone: Python 3.8 syntax, the standard library and
    device_agent only (a package reader may also import its own modules)."""
    for reader in _readers(hwnas_plugin):
        files = _reader_files(reader.module)
        is_package = any(f.name == "__init__.py" for f in files)
        base = min(files, key=lambda f: len(f.parts)).parent
        for path in files:
            tree = ast.parse(path.read_text(), str(path), feature_version=(3, 8))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    if node.level:  # the zipapp holds the reader package, nothing above it
                        depth = len(path.relative_to(base).parts)
                        assert is_package, f"{path}: relative import outside a package reader"
                        assert node.level <= depth, f"{path}: imports above the reader package"
                        continue
                    names = [node.module or ""]
                for name in names:
                    top = name.split(".")[0]
                    allowed = (top in sys.stdlib_module_names and top not in _NEWER_STDLIB) or (
                        top == "device_agent"
                        or (is_package and (name + ".").startswith(reader.module + "."))
                    )
                    assert allowed, f"{path} imports {name}, which a board does not have"


def test_power_readers_report_absence_without_raising(hwnas_plugin: Any, tmp_path: Path) -> None:
    for reader in _readers(hwnas_plugin):
        meters, reasons = importlib.import_module(reader.module).discover(tmp_path, _failing_runner)
        assert meters == [], f"{reader.module} found a meter in an empty tree"
        assert reasons, "say why nothing was found"
        assert all(isinstance(r, str) for r in reasons)


def _found(plugin: Any, root: Path | None) -> list[Any]:
    if root is None:
        pytest.skip("define a power_root fixture: a fake /sys where the readers find a meter")
    meters: list[Any] = []
    for reader in _readers(plugin):
        found, _ = importlib.import_module(reader.module).discover(root, _failing_runner)
        meters += found
    assert meters, "no meter found in power_root"
    return meters


def test_power_readers_find_and_read_meters(hwnas_plugin: Any, power_root: Path | None) -> None:
    from device_agent.power import KIND_ENERGY, KIND_POWER, SCOPES, PowerMeter

    for meter in _found(hwnas_plugin, power_root):
        assert isinstance(meter, PowerMeter)
        assert meter.kind in (KIND_POWER, KIND_ENERGY)
        assert meter.scope in SCOPES
        assert ":" in meter.source, "source should read 'prefix:what'"
        value = meter.read()
        assert isinstance(value, float)
        assert math.isfinite(value)
        assert value >= 0


def test_power_readers_integrate_to_energy(hwnas_plugin: Any, power_root: Path | None) -> None:
    from device_agent.power import integrate

    for meter in _found(hwnas_plugin, power_root):
        samples = [(i * 0.1, meter.read()) for i in range(11)]  # 1 s at 10 Hz, fake clock
        result = integrate(
            samples, meter.kind, meter.source, 0.1, meter.wrap_j, meter.update_interval_s
        )
        assert result.mean_w is not None, result.reason
        assert result.energy_j is not None
        assert result.energy_j >= 0


def test_power_readers_are_packed_into_the_agent(hwnas_plugin: Any) -> None:
    import io
    import zipfile

    from hwnas_bench.deploy import build_agent_zipapp

    readers = _readers(hwnas_plugin)
    bundle = build_agent_zipapp(tuple(r.module for r in readers))
    names = zipfile.ZipFile(io.BytesIO(bundle.data)).namelist()
    for reader in readers:
        path = reader.module.replace(".", "/")
        assert f"{path}.py" in names or f"{path}/__init__.py" in names


def test_transports_follow_the_contract(hwnas_plugin: Any) -> None:
    from hwnas_bench.transports.base import Transport

    samples: dict[type, Any] = {str: "x", int: 1, bool: False, float: 1.0}
    for plugin in _impl(hwnas_plugin, "hwnas_transports"):
        assert isinstance(plugin, TransportPlugin)
        assert plugin.name not in ("local", "ssh", "serial"), "shadows a built-in transport"
        assert set(plugin.required) <= set(plugin.keys), "required keys must be among keys"
        options = {}
        for key in plugin.required:
            kind = plugin.keys[key]
            first = kind[0] if isinstance(kind, tuple) else kind
            if first not in samples:
                pytest.fail(
                    f"transport '{plugin.name}': key '{key}' has type {first}; "
                    "config values are str, int, float or bool"
                )
            options[key] = samples[first]
        transport = plugin.factory("conformance", options)
        assert isinstance(transport, Transport), "the factory must return a Transport"
        assert transport.description
