"""The settings of one search, as the run directory records them (resume checks them)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import SettingsError
from .evaluate import check_stat
from .train import TrainSettings

#: constraint name -> what it limits. latency_ms / energy_mj are checked on the measurement
#: (over budget = infeasible, never discarded); the others analytically, before training.
CONSTRAINTS = {
    "latency_ms": "measured latency statistic (latency_stat), ms",
    "energy_mj": "measured energy per inference, mJ (needs a power meter on the board)",
    "memory_mb": "weights + peak activations, MB (analytic, before training)",
    "flops": "FLOPs per inference (analytic, before training)",
    "params": "parameters (analytic, before training)",
}
MEASURED_CONSTRAINTS = ("latency_ms", "energy_mj")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: object) -> bool:
    """An int or float, numpy scalars too (a budget computed with numpy is still a number)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_constraints(constraints: dict[str, float] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (constraints or {}).items():
        if key not in CONSTRAINTS:
            raise SettingsError(f"unknown constraint '{key}' (known: {', '.join(CONSTRAINTS)})")
        if value is None:
            continue
        if not _is_number(value) or not math.isfinite(float(value)) or float(value) <= 0:
            raise SettingsError(f"constraint {key} must be a finite number > 0, got {value!r}")
        out[key] = float(value)
    return out


@dataclass(frozen=True)
class SearchSettings:
    strategy: str = "evolution"
    trials: int = 40
    constraints: dict[str, float] = field(default_factory=dict)
    latency_stat: str = "p50"
    train: TrainSettings = field(default_factory=TrainSettings)
    validation_split: float = 0.2
    seed: int = 0
    #: skip training a candidate the measured-table predictor puts over a budget by more
    #: than its own measured error (recorded as predicted over budget, never as measured)
    predictor: bool = False
    strategy_options: dict[str, Any] = field(default_factory=dict)  #: Strategy.options()

    def validate(self) -> None:
        check_stat(self.latency_stat)
        check_constraints(self.constraints)
        self.train.validate()
        for name in ("trials", "seed"):
            if not _is_int(getattr(self, name)):
                raise SettingsError(f"{name} must be an integer, got {getattr(self, name)!r}")
        if self.seed < 0:
            raise SettingsError(f"seed must be >= 0, got {self.seed}")
        if self.trials < 1:
            raise SettingsError(f"trials must be >= 1, got {self.trials}")
        if not isinstance(self.predictor, bool):
            raise SettingsError(f"predictor must be True or False, got {self.predictor!r}")
        if not 0.0 < self.validation_split < 1.0:
            raise SettingsError(f"validation_split must be in (0, 1), got {self.validation_split}")

    @property
    def latency_budget(self) -> float | None:
        return self.constraints.get("latency_ms")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resume_key(self) -> dict[str, Any]:
        """What must match for a resume (``trials`` may grow: it is not part of it)."""
        data = self.to_dict()
        data.pop("trials")
        return data
