"""Per-session state of the plugin, kept in ``config.stash`` (never on pytest's objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..config import Config
from ..farm import Farm
from ..report import Entry
from .compare import RegressionCheck, Verdict


@dataclass
class HwState:
    config: Config
    targets: list[str]  #: from --hw-target, or ["local"]
    explicit_targets: bool  #: the user chose targets on the command line
    storage: Path
    checks: list[RegressionCheck]
    compare: str | None  #: baseline name ("" = latest), None = no comparison
    worker: str  #: xdist worker id, or "main"
    config_error: str | None = None  #: a broken hwnas.toml, raised once hw tests are collected
    entries: list[Entry] = field(default_factory=list)
    verdicts: list[tuple[Entry, Verdict]] = field(default_factory=list)
    setup_warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _farm: Farm | None = None

    def farm(self) -> Farm:
        if self._farm is None:
            self._farm = Farm(self.config, purpose=f"pytest worker {self.worker}")
        return self._farm

    def close(self) -> None:
        if self._farm is not None:
            self._farm.close()


STATE = pytest.StashKey[HwState]()


def get_state(config: pytest.Config) -> HwState:
    return config.stash[STATE]
