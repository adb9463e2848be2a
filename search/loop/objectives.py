"""What the study is told about a measured candidate: its objectives and constraints.

One target: validation accuracy (max) and the measured latency (min), and one constraint
per measured budget (``Budgets.slack``: ``value - budget``; > 0 is violated, and a figure
not measured counts as twice its budget) that NSGA-II reads by constrained domination.
Several targets: accuracy and one latency per target, in the order given, and a single
constraint ``budgets``: the smallest over the targets of the largest slack on that target.
A candidate within budget on any one target is thus feasible for the study, since it may be
that target's answer; each target's own front and best use only its own figures
(``SearchResult.for_target``).

With energy as an objective (``SearchSettings.objectives``), the measured energy per
inference (min) follows: one per target, after the latencies. A measured trial with no
energy figure is infeasible, with the reason (it is never ranked as if it had low energy),
and the study is told +inf for its energy.
"""

from __future__ import annotations

import math

import optuna

from hwnas_bench import Measurement

from ..measure.confidence import Verdict
from ..predict.predictor import Prediction
from ..records import BoardFigures, TrialRecord
from ..settings import MeasuredFigures, SearchSettings, Violation


def directions(targets: int, *, energy: bool = False) -> list[optuna.study.StudyDirection]:
    """Accuracy up, then each target's latency down (and, with ``energy``, each target's
    energy down)."""
    d = optuna.study.StudyDirection
    per_target = [d.MINIMIZE] * max(1, targets)
    return [d.MAXIMIZE] + per_target + (per_target if energy else [])


def figures(
    m: Measurement,
    settings: SearchSettings,
    predicted: Prediction | None,
    verdict: Verdict | None = None,
) -> BoardFigures:
    """A measurement scored against the budgets: infeasible when over one, when its rounds
    left its side of the latency budget undecided (``verdict``), or when a figure a budget
    needs was not measured, with the reason; with energy as an objective, also when there
    is no energy figure to rank it by."""
    measured = MeasuredFigures.of(m, settings.latency_stat, verdict)
    broken = settings.budgets.violations(measured)
    unranked = energy_missing(measured, settings)
    return BoardFigures(
        measured.latency_ms,
        measured.energy_mj,
        not broken and unranked is None,
        predicted,
        m,
        reason=reason(broken, unranked),
        latency_verdict=verdict,
    )


def energy_missing(measured: MeasuredFigures, settings: SearchSettings) -> str | None:
    """Why a measurement cannot be ranked by energy as an objective (None: it can, or energy
    is no objective, or an energy budget already says it was not measured)."""
    if not settings.energy_objective or settings.budgets.energy_mj is not None:
        return None
    if _known(measured.energy_mj):
        return None
    why = measured.energy_reason or "no energy figure"
    return f"energy not measured (energy is an objective): {why}"


def reason(broken: list[Violation], *more: str | None) -> str | None:
    """Why a measured candidate is infeasible (None: it is not)."""
    return "; ".join([v.reason for v in broken] + [m for m in more if m]) or None


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _measured_value(value: float | None) -> float:
    """The study's latency or energy: +inf where none was measured (never ranked as low)."""
    return float(value) if value is not None and _known(value) else math.inf


def measured_figures(f: BoardFigures | TrialRecord) -> MeasuredFigures:
    """A record's (or one target's) figures, with the measurement's power reason."""
    why = f.measurement.power.reason if f.measurement is not None else None
    return MeasuredFigures(f.latency_ms, f.energy_mj, why, f.latency_verdict)


def values(rec: TrialRecord, targets: list[str], *, energy: bool = False) -> list[float]:
    """What the study is told, in :func:`directions`' order."""
    assert rec.accuracy is not None
    if not rec.boards:
        assert rec.latency_ms is not None
        return [rec.accuracy, rec.latency_ms] + ([_measured_value(rec.energy_mj)] if energy else [])
    boards = [rec.boards[t] for t in targets]
    energies = [_measured_value(f.energy_mj) for f in boards] if energy else []
    # a board that failed this trial measured nothing there: +inf, never a fast 0
    return [rec.accuracy, *(_measured_value(f.latency_ms) for f in boards), *energies]


def constrain(trial: optuna.Trial, rec: TrialRecord, settings: SearchSettings) -> None:
    budgets = settings.budgets
    if not budgets.measured:
        return
    if not rec.boards:
        for name, slack in budgets.slack(measured_figures(rec)).items():
            trial.set_constraint(name, slack)
        return
    worst = [max(budgets.slack(measured_figures(f)).values()) for f in rec.boards.values()]
    trial.set_constraint("budgets", min(worst))
