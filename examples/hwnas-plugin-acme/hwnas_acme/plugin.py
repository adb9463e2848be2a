"""The hook implementations hwnas loads from the ``hwnas`` entry point."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hw_targets import HardwareProfile, PowerReaderPlugin, hookimpl, load_profile


@hookimpl
def hwnas_hardware_profiles() -> Sequence[HardwareProfile]:
    return [load_profile(Path(__file__).with_name("acme-edge-1.toml"))]


@hookimpl
def hwnas_power_readers() -> Sequence[PowerReaderPlugin]:
    return [
        PowerReaderPlugin(
            name="power_supply",
            module="hwnas_acme.power_supply",
            description="Linux power_supply class: power_now (µW) or voltage_now × current_now",
        )
    ]
