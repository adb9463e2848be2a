"""The built-in plugin: the profiles shipped in ``hw_targets/profiles/``."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from .detect import match_device_model
from .hookspecs import hookimpl
from .profile import HardwareProfile, builtin_profile_files, load_profile


@functools.cache
def _builtin_profiles() -> tuple[HardwareProfile, ...]:
    return tuple(load_profile(path) for path in builtin_profile_files())  # read once


@hookimpl
def hwnas_hardware_profiles() -> Sequence[HardwareProfile]:
    return list(_builtin_profiles())


@hookimpl(trylast=True)
def hwnas_match_profile(facts: Mapping[str, Any]) -> str | None:
    return match_device_model(facts)
