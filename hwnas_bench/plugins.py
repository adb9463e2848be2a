"""hw_targets' plugin manager with hwnas_bench's own built-ins registered on it.

The import goes one way: this module imports the built-in transports, never the reverse.
"""

from __future__ import annotations

import pluggy

import hw_targets
from hw_targets import PowerReaderPlugin, TransportPlugin

from .transports import builtin
from .transports.builtin import agent_plugin_args


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


__all__ = ["agent_plugin_args", "plugin_manager", "power_reader_plugins", "transport_plugins"]
