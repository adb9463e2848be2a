"""The settings of one search, as the run directory records them (resume checks them)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import SettingsError
from .training.train import MAX_SEED, TrainSettings, check_int, check_number, is_number

#: latency statistic name -> Latency field
STATS = {"p50": "median_ms", "p95": "p95_ms", "p99": "p99_ms", "mean": "mean_ms"}


def check_stat(stat: str) -> str:
    if stat not in STATS:
        raise SettingsError(f"unknown latency_stat '{stat}' (known: {', '.join(STATS)})")
    return stat


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
#: the most trials one search (or one shared study) may ask for
MAX_TRIALS = 1_000_000


def check_constraints(constraints: dict[str, float] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (constraints or {}).items():
        if key not in CONSTRAINTS:
            raise SettingsError(f"unknown constraint '{key}' (known: {', '.join(CONSTRAINTS)})")
        if value is None:
            continue
        if not is_number(value) or not math.isfinite(float(value)) or float(value) <= 0:
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
        check_int("trials", self.trials, 1, MAX_TRIALS)
        check_int("seed", self.seed, 0, MAX_SEED)
        if not isinstance(self.predictor, bool):
            raise SettingsError(f"predictor must be True or False, got {self.predictor!r}")
        check_number("validation_split", self.validation_split, 0.0, 1.0, low_open=True)
        if self.validation_split == 1.0:
            raise SettingsError(f"validation_split must be < 1, got {self.validation_split}")

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
