"""The ``local`` profile, and any board's, described from what its agent reports in hello."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .profile import CpuSpec, HardwareProfile, MemorySpec, PowerSpec


def profile_from_facts(name: str, facts: Mapping[str, Any]) -> HardwareProfile:
    """A profile built from ``hello`` facts: only what the board said, nothing guessed."""
    max_freqs = [f for f in facts.get("cpu_freq_max_mhz") or [] if f]
    sensors = sorted(
        {str(m["source"]).split(":")[0].split(" ")[0] for m in facts.get("power_meters", [])}
    )
    return HardwareProfile(
        name=name,
        display_name=str(facts.get("device_model") or facts.get("hostname") or name),
        vendor="detected",
        cpu=CpuSpec(
            arch=str(facts.get("arch") or "unknown"),
            cores=int(facts.get("cores_physical") or facts.get("cores_logical") or 1),
            threads=facts.get("cores_logical"),
            max_clock_mhz=max(max_freqs) if max_freqs else None,
            microarchitecture=str(facts.get("cpu_model") or "unknown"),
        ),
        memory=MemorySpec(total_mb=int(facts.get("memory_mb") or 0)),
        execution_providers=tuple(facts.get("providers") or ("CPUExecutionProvider",)),
        power=PowerSpec(sensors=tuple(sensors)),
        notes=f"detected from the agent on {facts.get('hostname') or name}",
        source="detected",
    )


#: Substrings of /proc/device-tree/model that name a built-in profile.
DEVICE_MODELS = {
    "Raspberry Pi 5": "raspberry-pi-5",
    "Raspberry Pi 4": "raspberry-pi-4",
    "Jetson Nano": "jetson-nano",
    "Orin Nano": "jetson-orin-nano",
    "AGX Orin": "jetson-agx-orin",
    "KV260": "kria-kv260",  # mainline: "ZynqMP KV260 revB"; Kria images may say "Xilinx ..."
}


def match_device_model(facts: Mapping[str, Any]) -> str | None:
    model = str(facts.get("device_model") or "")
    for needle, profile in DEVICE_MODELS.items():
        if needle in model:
            return profile
    return "generic-x86-64" if facts.get("arch") == "x86_64" else None
