"""The hardware database (board profiles) and the plugin system of hwnas-bench.

Imports only the standard library and pluggy; both host packages read it.
"""

from __future__ import annotations

from .detect import profile_from_facts
from .hookspecs import PowerReaderPlugin, TransportPlugin, hookimpl, hookspec
from .plugins import (
    DISABLE_AUTOLOAD_ENV,
    ENTRY_POINT_GROUP,
    get_plugin_manager,
    hardware_profiles,
    match_profile,
    power_readers,
    reset_plugin_manager,
    transports,
)
from .profile import (
    Accelerator,
    CpuSpec,
    HardwareProfile,
    HwTargetsError,
    MemorySpec,
    PluginError,
    PowerMode,
    PowerSpec,
    ProfileError,
    load_profile,
    profile_from_dict,
)

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "Accelerator",
    "CpuSpec",
    "HardwareProfile",
    "HwTargetsError",
    "MemorySpec",
    "PluginError",
    "PowerMode",
    "PowerReaderPlugin",
    "PowerSpec",
    "ProfileError",
    "TransportPlugin",
    "get_plugin_manager",
    "hardware_profiles",
    "hookimpl",
    "hookspec",
    "load_profile",
    "match_profile",
    "power_readers",
    "profile_from_dict",
    "profile_from_facts",
    "reset_plugin_manager",
    "transports",
]
