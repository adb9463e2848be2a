"""The settings of one search, as the run directory records them (resume checks them), and
the budgets a candidate is held to (:class:`Budgets`, the one place a figure is compared with
its budget)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeGuard

from .errors import SettingsError
from .training.settings import MAX_SEED, TrainSettings, check_int, check_number, is_number

if TYPE_CHECKING:
    from hwnas_bench import Measurement

    from .measure.confidence import Verdict  # the measuring side; never imported here

#: latency statistic name -> Latency field
STATS = {"p50": "median_ms", "p95": "p95_ms", "p99": "p99_ms", "mean": "mean_ms"}
#: the statistic a latency budget limits unless one is named (Budgets, Searcher, the CLI)
DEFAULT_STAT = "p50"


def check_stat(stat: str) -> str:
    if stat not in STATS:
        raise SettingsError(f"unknown latency_stat '{stat}' (known: {', '.join(STATS)})")
    return stat


#: budget name -> what it limits. latency_ms / energy_mj are checked on the measurement
#: (over budget = infeasible, never discarded); the others analytically, before training.
CONSTRAINTS = {
    "latency_ms": "measured latency statistic (latency_stat), ms",
    "energy_mj": "measured energy per inference, mJ (needs a power meter on the board)",
    "memory_mb": "weights + peak activations, MB (analytic, before training)",
    "flops": "FLOPs per inference (analytic, before training)",
    "params": "parameters (analytic, before training)",
}
#: the most trials one search (or one shared study) may ask for
MAX_TRIALS = 1_000_000
#: what a search optimises, in the study's order: validation accuracy (max), the measured
#: latency statistic (min) and, with ``energy``, the measured energy per inference (min)
OBJECTIVE_NAMES = ("accuracy", "latency", "energy")
#: one objective's name (``Searcher(objectives=...)``)
Objective = Literal["accuracy", "latency", "energy"]
DEFAULT_OBJECTIVES = ("accuracy", "latency")
ENERGY_OBJECTIVES = ("accuracy", "latency", "energy")
#: strategies that weigh budgets, not the study's objectives (they cannot minimise energy
#: as an objective: an energy budget is their way to ask for it)
BUDGET_ONLY_STRATEGIES = ("differentiable",)


def check_objectives(objectives: Any) -> tuple[str, ...]:
    """``("accuracy", "latency")`` or ``("accuracy", "latency", "energy")`` in any order,
    as the study's order; SettingsError naming what is wrong otherwise."""
    if isinstance(objectives, str) or not isinstance(objectives, (list, tuple)):
        raise SettingsError(
            f"objectives must be a list of names such as {list(ENERGY_OBJECTIVES)}, "
            f"got {objectives!r}"
        )
    unknown = [o for o in objectives if o not in OBJECTIVE_NAMES]
    if unknown:
        raise SettingsError(
            f"unknown objective {unknown[0]!r} (known: {', '.join(OBJECTIVE_NAMES)})"
        )
    if len(set(objectives)) != len(objectives):
        raise SettingsError(f"objectives name one objective twice: {list(objectives)}")
    if not {"accuracy", "latency"} <= set(objectives):
        raise SettingsError(
            f"objectives must hold accuracy and latency (energy may be added), got "
            f"{list(objectives)}"
        )
    return tuple(o for o in OBJECTIVE_NAMES if o in objectives)


def _known(value: float | None) -> TypeGuard[float]:
    """A figure that was measured: not None, not NaN."""
    return value is not None and not math.isnan(value)


@dataclass(frozen=True)
class MeasuredFigures:
    """What a measured budget is checked against: one candidate's figures on one board (a
    measurement's, a card's, a derived round's). None or NaN: not measured."""

    latency_ms: float | None  #: the budgets' latency statistic
    energy_mj: float | None = None  #: per inference
    energy_reason: str | None = None  #: why there is no energy figure (the power reason)
    #: the side of the latency budget its rounds are on at 95% confidence (None: judged
    #: on ``latency_ms`` alone: a card's, a derived round's, an older record's)
    latency_verdict: Verdict | None = None

    @classmethod
    def of(cls, m: Measurement, stat: str, verdict: Verdict | None = None) -> MeasuredFigures:
        """A Measurement's figures on the latency statistic ``stat``."""
        latency = getattr(m.latency, STATS[check_stat(stat)])
        return cls(
            float(latency) if latency is not None else None,
            m.power.energy_mj,
            m.power.reason,
            verdict,
        )

    def value(self, budget: str) -> float | None:
        """The figure a measured budget (``latency_ms``, ``energy_mj``) limits."""
        return {"latency_ms": self.latency_ms, "energy_mj": self.energy_mj}[budget]


@dataclass(frozen=True)
class Violation:
    """One measured budget a candidate is not within: over it, or not measured at all."""

    budget: str  #: latency_ms or energy_mj
    limit: float  #: the budget
    value: float | None  #: the figure; None when it was not measured
    reason: str  #: ``over budget: p50 1.2 ms > 1 ms``, ``energy not measured: <why>``

    @property
    def measured(self) -> bool:
        return self.value is not None


#: the option (flag, search.toml key) that sets each measured or memory budget
BUDGET_OPTIONS = {
    "latency_ms": "latency_budget_ms",
    "energy_mj": "energy_budget_mj",
    "memory_mb": "memory_budget_mb",
}


@dataclass(frozen=True)
class Budgets:
    """The user's budgets (None: no budget) and the latency statistic the latency budget
    limits. ``latency_ms`` and ``energy_mj`` are checked on the measurement (:meth:`slack`,
    :meth:`violations`); ``memory_mb``, ``flops`` and ``params`` analytically, before
    training (``search.cost.Limits``).

    A figure that was not measured (None or NaN) is never within its budget: it is a
    violation with the reason, and its slack is the budget itself (as if it were twice the
    budget), so that Optuna's constrained domination ranks it infeasible, never as 0."""

    latency_ms: float | None = None
    energy_mj: float | None = None
    memory_mb: float | None = None
    flops: float | None = None
    params: float | None = None
    stat: str = DEFAULT_STAT  #: the latency statistic ``latency_ms`` limits

    #: the budgets checked on a measurement, in the order their violations are reported
    MEASURED: ClassVar[tuple[str, ...]] = ("latency_ms", "energy_mj")

    def __post_init__(self) -> None:
        check_stat(self.stat)
        for name in CONSTRAINTS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _budget(name, value))

    @classmethod
    def from_mapping(cls, budgets: Mapping[str, Any] | None, stat: str = DEFAULT_STAT) -> Budgets:
        """``{"latency_ms": 0.05, ...}`` (search.json's ``constraints``, a card's
        ``budgets``, ``Searcher(constraints=...)``); a None value is no budget. SettingsError
        for an unknown name or a value that is not a finite number > 0."""
        values: dict[str, float] = {}
        for key, value in (budgets or {}).items():
            if key not in CONSTRAINTS:
                raise SettingsError(f"unknown constraint '{key}' (known: {', '.join(CONSTRAINTS)})")
            if value is not None:
                values[key] = _budget(key, value)
        return cls(**values, stat=stat)

    def with_options(self, options: Mapping[str, Any]) -> Budgets:
        """These budgets as a verb's options set them: each budget from its option
        (``latency_budget_ms``, ...: :data:`BUDGET_OPTIONS`; None is no budget), the
        statistic from ``latency_stat``; flops and params kept (a resumed run's)."""
        given = {name: options.get(option) for name, option in BUDGET_OPTIONS.items()}
        return replace(self, **given, stat=options.get("latency_stat") or self.stat)

    def to_mapping(self) -> dict[str, float]:
        """The budgets that are set, by name: the record's form (search.json, the card)."""
        return {n: getattr(self, n) for n in CONSTRAINTS if getattr(self, n) is not None}

    @property
    def measured(self) -> dict[str, float]:
        """The measured budgets that are set (latency, energy), by name."""
        return {n: getattr(self, n) for n in self.MEASURED if getattr(self, n) is not None}

    def slack(self, figures: MeasuredFigures) -> dict[str, float]:
        """Measured budget -> value - budget (> 0: violated), for each measured budget set;
        a figure not measured gets the budget itself (positive: as if twice the budget)."""
        out = {}
        for name, limit in self.measured.items():
            value = figures.value(name)
            verdict = figures.latency_verdict if name == "latency_ms" else None
            if not _known(value):
                out[name] = limit
            elif verdict is not None and verdict.budget == limit:
                out[name] = verdict.slack  # undecided: > 0, never within
            else:
                out[name] = value - limit
        return out

    def violations(self, figures: MeasuredFigures) -> list[Violation]:
        """The measured budgets ``figures`` are not within, each with its reason: over the
        budget, or not measured (never within, never skipped)."""
        out = []
        for name, excess in self.slack(figures).items():
            if not excess > 0:
                continue
            limit, value = self.measured[name], figures.value(name)
            verdict = figures.latency_verdict if name == "latency_ms" else None
            if _known(value) and verdict is not None and not verdict.decided:
                out.append(Violation(name, limit, value, verdict.reason()))
            elif _known(value):
                out.append(Violation(name, limit, value, self._over(name, value, limit)))
            else:
                out.append(Violation(name, limit, None, self._not_measured(name, figures)))
        return out

    def over_by_more_than(self, figures: MeasuredFigures, margin: float) -> list[Violation]:
        """The measured budgets whose figure exceeds them by more than ``margin`` (a
        fraction of the budget): the predictor's rule for not training a candidate. A figure
        that is not there is never a reason to skip (only a measurement decides)."""
        out = []
        for name, limit in self.measured.items():
            value = figures.value(name)
            if _known(value) and value > limit * (1 + margin):
                out.append(Violation(name, limit, value, self._over(name, value, limit)))
        return out

    def _over(self, name: str, value: float, limit: float) -> str:
        if name == "latency_ms":
            return f"over budget: {self.stat} {value:.4g} ms > {limit:g} ms"
        return f"over budget: energy {value:.4g} mJ > {limit:g} mJ"

    def _not_measured(self, name: str, figures: MeasuredFigures) -> str:
        if name == "latency_ms":
            return f"{self.stat} latency not measured"
        return f"energy not measured: {figures.energy_reason or 'no energy figure'}"


def _budget(name: str, value: Any) -> float:
    if not is_number(value) or not math.isfinite(float(value)) or float(value) <= 0:
        raise SettingsError(f"constraint {name} must be a finite number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SearchSettings:
    strategy: str = "evolution"
    trials: int = 40
    budgets: Budgets = field(default_factory=Budgets)
    train: TrainSettings = field(default_factory=TrainSettings)
    validation_split: float = 0.2
    seed: int = 0
    #: skip training a candidate the measured-table predictor puts over a budget by more
    #: than its own measured error (recorded as predicted over budget, never as measured)
    predictor: bool = False
    strategy_options: dict[str, Any] = field(default_factory=dict)  #: Strategy.options()
    #: the study's objectives (:data:`DEFAULT_OBJECTIVES`, or :data:`ENERGY_OBJECTIVES`)
    objectives: tuple[str, ...] = DEFAULT_OBJECTIVES

    def validate(self) -> None:
        if not isinstance(self.budgets, Budgets):
            raise SettingsError(f"budgets must be a Budgets, got {self.budgets!r}")
        if check_objectives(self.objectives) != self.objectives:
            raise SettingsError(
                f"objectives must be in the study's order {list(OBJECTIVE_NAMES)}, got "
                f"{list(self.objectives)}"
            )
        if self.energy_objective and self.strategy in BUDGET_ONLY_STRATEGIES:
            raise SettingsError(
                f"the {self.strategy} strategy weighs budgets, not objectives: it cannot "
                "minimise energy as an objective; give it an energy budget "
                "(--energy-budget-mj, budgets=Budgets(energy_mj=...)) or use evolution"
            )
        self.train.validate()
        check_int("trials", self.trials, 1, MAX_TRIALS)
        check_int("seed", self.seed, 0, MAX_SEED)
        if not isinstance(self.predictor, bool):
            raise SettingsError(f"predictor must be True or False, got {self.predictor!r}")
        check_number("validation_split", self.validation_split, 0.0, 1.0, low_open=True)
        if self.validation_split == 1.0:
            raise SettingsError(f"validation_split must be < 1, got {self.validation_split}")

    @property
    def latency_stat(self) -> str:
        """The latency statistic the search measures, compares and reports (the budgets')."""
        return self.budgets.stat

    @property
    def energy_objective(self) -> bool:
        """Energy per inference is minimised as the study's third objective."""
        return "energy" in self.objectives

    @property
    def wants_energy(self) -> bool:
        """Every measurement must give an energy figure: an energy budget or objective."""
        return self.budgets.energy_mj is not None or self.energy_objective

    def to_dict(self) -> dict[str, Any]:
        """The record's form (search.json, a shared study's record): the budgets as
        ``constraints`` and ``latency_stat``, the keys of every earlier version;
        ``objectives`` only when not the default (a run from before it resumes)."""
        out: dict[str, Any] = {
            "strategy": self.strategy,
            "trials": self.trials,
            "constraints": self.budgets.to_mapping(),
            "latency_stat": self.budgets.stat,
            "train": self.train.to_record(),
            "validation_split": self.validation_split,
            "seed": self.seed,
            "predictor": self.predictor,
            "strategy_options": dict(self.strategy_options),
        }
        if self.objectives != DEFAULT_OBJECTIVES:
            out["objectives"] = list(self.objectives)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **overrides: Any) -> SearchSettings:
        """The settings a record holds (:meth:`to_dict`'s form; ``overrides`` replace
        fields). KeyError, TypeError (an unknown setting) or SettingsError for a record
        that is not one."""
        rest = {k: v for k, v in data.items() if k not in ("constraints", "latency_stat")}
        budgets = Budgets.from_mapping(data["constraints"], stat=data["latency_stat"])
        train = TrainSettings.from_record(data["train"])
        if "objectives" in rest:  # a JSON list; absent: the default (every earlier run)
            rest["objectives"] = check_objectives(rest["objectives"])
        return cls(**{**rest, "budgets": budgets, "train": train, **overrides})

    def resume_key(self) -> dict[str, Any]:
        """What must match for a resume (``trials`` may grow: it is not part of it)."""
        data = self.to_dict()
        data.pop("trials")
        return data
