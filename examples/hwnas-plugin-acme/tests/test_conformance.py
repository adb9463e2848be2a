"""Runs hwnas-bench's conformance suite against this plugin."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from hwnas_bench.testing.conformance import *  # noqa: F403  (the suite's tests)


@pytest.fixture
def hwnas_plugin() -> ModuleType:
    import hwnas_acme.plugin

    return hwnas_acme.plugin


@pytest.fixture
def power_root(tmp_path: Path) -> Path:
    """A fake /sys where the power_supply reader finds one supply delivering 4.2 W."""
    supply = tmp_path / "sys/class/power_supply/usb-pd"
    supply.mkdir(parents=True)
    (supply / "power_now").write_text("4200000\n")
    return tmp_path
