"""pytest fixtures for the simulated INA226: ``simulated_ina226`` and ``metered_target``.

Load them in a test module or the root conftest.py with
``pytest_plugins = ["hwnas_bench.testing.power_fixtures"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..targets import TargetSpec
from .power_sim import SimulatedIna226


@pytest.fixture
def simulated_ina226(tmp_path: Path) -> Iterator[SimulatedIna226]:
    """A running :class:`SimulatedIna226` (2 W idle, 3 W per busy core, 5 ms conversions)
    in a fresh fake root; stopped after the test."""
    with SimulatedIna226(tmp_path / "metered-root") as meter:
        yield meter


@pytest.fixture
def metered_target(simulated_ina226: SimulatedIna226) -> TargetSpec:
    """A local board whose agent reads the simulated meter (its ``power_root``)."""
    return TargetSpec(
        "metered", "local", {"power_root": str(simulated_ina226.root)}, profile="local"
    )
