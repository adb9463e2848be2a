"""hw_targets' plugin manager with hwnas_bench's own built-ins registered on it."""

from __future__ import annotations

import pluggy

import hw_targets
from hw_targets import PowerReaderPlugin, TransportPlugin

from .transports import builtin


def plugin_manager() -> pluggy.PluginManager:
    pm = hw_targets.get_plugin_manager()
    hw_targets.plugins.register(builtin, "hwnas_bench.transports")
    return pm


def transport_plugins() -> dict[str, TransportPlugin]:
    plugin_manager()
    return hw_targets.transports()


def power_reader_plugins() -> list[PowerReaderPlugin]:
    plugin_manager()
    return hw_targets.power_readers()


def agent_plugin_args() -> list[str]:
    """Command-line options that make an agent load the installed power readers."""
    args: list[str] = []
    for reader in power_reader_plugins():
        args += ["--power-plugin", reader.module]
    return args
