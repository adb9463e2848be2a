"""What the study is told about a measured candidate: its objectives and constraints.

One target: validation accuracy (max) and the measured latency (min), and one constraint
per measured budget (``Budgets.slack``: ``value - budget``; > 0 is violated, and a figure
not measured counts as twice its budget) that NSGA-II reads by constrained domination.
Several targets: accuracy and one latency per target, in the order given, and a single
constraint ``budgets``: the smallest over the targets of the largest slack on that target.
A candidate within budget on any one target is thus feasible for the study, since it may be
that target's answer; each target's own front and best use only its own figures
(``SearchResult.for_target``).
"""

from __future__ import annotations

import optuna

from hwnas_bench import Measurement

from ..predict.predictor import Prediction
from ..records import BoardFigures, TrialRecord
from ..settings import MeasuredFigures, SearchSettings, Violation


def directions(targets: int) -> list[optuna.study.StudyDirection]:
    """Accuracy up, then each target's latency down."""
    d = optuna.study.StudyDirection
    return [d.MAXIMIZE] + [d.MINIMIZE] * max(1, targets)


def figures(m: Measurement, settings: SearchSettings, predicted: Prediction | None) -> BoardFigures:
    """A measurement scored against the budgets: infeasible when over one or when a
    figure a budget needs was not measured, with the reason."""
    measured = MeasuredFigures.of(m, settings.latency_stat)
    broken = settings.budgets.violations(measured)
    return BoardFigures(
        measured.latency_ms,
        measured.energy_mj,
        not broken,
        predicted,
        m,
        reason=reason(broken),
    )


def reason(broken: list[Violation]) -> str | None:
    """Why a measured candidate is infeasible (None: it is not)."""
    return "; ".join(v.reason for v in broken) or None


def measured_figures(f: BoardFigures | TrialRecord) -> MeasuredFigures:
    """A record's (or one target's) figures, with the measurement's power reason."""
    why = f.measurement.power.reason if f.measurement is not None else None
    return MeasuredFigures(f.latency_ms, f.energy_mj, why)


def values(rec: TrialRecord, targets: list[str]) -> list[float]:
    if not rec.boards:
        assert rec.accuracy is not None
        assert rec.latency_ms is not None
        return [rec.accuracy, rec.latency_ms]
    assert rec.accuracy is not None
    return [rec.accuracy, *(float(rec.boards[t].latency_ms or 0.0) for t in targets)]


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
