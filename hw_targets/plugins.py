"""The plugin manager and the registries built from it (profiles, transports, readers, and
the search's block kinds)."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import pluggy

from . import builtin, hookspecs
from .hookspecs import PowerReaderPlugin, TransportPlugin
from .profile import HardwareProfile, PluginError

#: Set (to anything) to load no plugins from entry points, as PYTEST_DISABLE_PLUGIN_AUTOLOAD.
DISABLE_AUTOLOAD_ENV = "HWNAS_DISABLE_PLUGIN_AUTOLOAD"
ENTRY_POINT_GROUP = "hwnas"


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, "hw_targets.builtin")
    if not os.environ.get(DISABLE_AUTOLOAD_ENV):
        _load_entry_points(pm)
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """``pm.load_setuptools_entrypoints``, but a plugin that fails to import is one clear
    PluginError naming it and its package, never a traceback from deep in importlib."""
    import importlib.metadata

    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or pm.get_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # whatever the plugin's import raises
                raise PluginError(
                    f"plugin '{ep.name}' ({ep.value}, from the package "
                    f"{dist.metadata['Name']}) cannot be loaded: {type(exc).__name__}: {exc}; "
                    f"reinstall or uninstall that package, or set {DISABLE_AUTOLOAD_ENV}=1"
                ) from exc
            pm.register(plugin, name=ep.name)


def reset_plugin_manager() -> None:
    """Forget the manager (tests, or after installing a plugin in the same process)."""
    get_plugin_manager.cache_clear()


def register(plugin: Any, name: str) -> None:
    """Register a plugin object unless one of that name is registered already."""
    pm = get_plugin_manager()
    if pm.get_plugin(name) is None:
        pm.register(plugin, name)


def _plugin_name(pm: pluggy.PluginManager, impl_plugin: Any) -> str:
    return pm.get_name(impl_plugin) or repr(impl_plugin)


def hardware_profiles() -> dict[str, HardwareProfile]:
    pm = get_plugin_manager()
    found: dict[str, HardwareProfile] = {}
    for impl in pm.hook.hwnas_hardware_profiles.get_hookimpls():
        profiles: Sequence[Any] = impl.function() or ()  # type: ignore[assignment]
        for profile in profiles:
            if not isinstance(profile, HardwareProfile):
                raise PluginError(
                    f"plugin '{_plugin_name(pm, impl.plugin)}' returned {type(profile).__name__}, "
                    "not a HardwareProfile"
                )
            if profile.name in found:
                raise PluginError(
                    f"profile '{profile.name}' is defined twice: {found[profile.name].source} "
                    f"and {profile.source} (plugin '{_plugin_name(pm, impl.plugin)}')"
                )
            found[profile.name] = profile
    return dict(sorted(found.items()))


def transports() -> dict[str, TransportPlugin]:
    found: dict[str, TransportPlugin] = {}
    for batch in get_plugin_manager().hook.hwnas_transports():
        for plugin in batch or ():
            if plugin.name in found:
                raise PluginError(f"transport '{plugin.name}' is registered by two plugins")
            found[plugin.name] = plugin
    return found


def power_readers() -> list[PowerReaderPlugin]:
    return [r for batch in get_plugin_manager().hook.hwnas_power_readers() for r in batch or ()]


def search_blocks() -> list[tuple[str, Any]]:
    """(plugin name, object) for each block kind a plugin's ``hwnas_search_blocks`` returns,
    in registration order; ``search.blocks`` checks what the objects are."""
    pm = get_plugin_manager()
    return [
        (_plugin_name(pm, impl.plugin), kind)
        for impl in pm.hook.hwnas_search_blocks.get_hookimpls()
        for kind in cast("Iterable[Any]", impl.function() or ())
    ]


def match_profile(facts: Mapping[str, Any]) -> str | None:
    result: str | None = get_plugin_manager().hook.hwnas_match_profile(facts=facts)
    return result
