"""What the study is told about a measured candidate: its objectives and constraints.

One target: validation accuracy (max) and the measured latency (min), and one constraint
per budget (``value - budget``; > 0 is violated) that NSGA-II reads by constrained
domination. Several targets: accuracy and one latency per target, in the order given, and
a single constraint ``budgets``: the smallest over the targets of the largest violation on
that target. A candidate within budget on any one target is thus feasible for the study,
since it may be that target's answer; each target's own front and best use only its own
figures (``SearchResult.for_target``).
"""

from __future__ import annotations

from typing import Any

import optuna

from hwnas_bench import Measurement

from ..measure import latency_of
from ..records import BoardFigures, TrialRecord
from ..settings import SearchSettings

MEASURED_BUDGETS = ("latency_ms", "energy_mj")


def directions(targets: int) -> list[optuna.study.StudyDirection]:
    """Accuracy up, then each target's latency down."""
    d = optuna.study.StudyDirection
    return [d.MAXIMIZE] + [d.MINIMIZE] * max(1, targets)


def figures(
    m: Measurement, settings: SearchSettings, predicted: dict[str, Any] | None
) -> BoardFigures:
    """A measurement scored against the budgets."""
    latency = latency_of(m, settings.latency_stat)
    energy = m.power.energy_mj
    f = BoardFigures(latency, energy, None, predicted, m)
    f.feasible = not violations(f, settings)
    return f


def slack(f: BoardFigures, budgets: dict[str, float]) -> dict[str, float]:
    """Measured budget -> value - budget (> 0: over it); energy only where it was measured."""
    out = {}
    if "latency_ms" in budgets:
        out["latency_ms"] = (f.latency_ms or 0.0) - budgets["latency_ms"]
    if "energy_mj" in budgets and f.energy_mj is not None:
        out["energy_mj"] = f.energy_mj - budgets["energy_mj"]
    return out


def violations(f: BoardFigures, settings: SearchSettings) -> dict[str, float]:
    """Budget -> value - budget, for each budget this target's figures exceed."""
    return {k: v for k, v in slack(f, settings.constraints).items() if v > 0}


def values(rec: TrialRecord, targets: list[str]) -> list[float]:
    if not rec.boards:
        assert rec.accuracy is not None
        assert rec.latency_ms is not None
        return [rec.accuracy, rec.latency_ms]
    assert rec.accuracy is not None
    return [rec.accuracy, *(float(rec.boards[t].latency_ms or 0.0) for t in targets)]


def constrain(trial: optuna.Trial, rec: TrialRecord, settings: SearchSettings) -> None:
    budgets = {k: v for k, v in settings.constraints.items() if k in MEASURED_BUDGETS}
    if not budgets:
        return
    if not rec.boards:
        if "latency_ms" in budgets:
            trial.set_constraint("latency_ms", (rec.latency_ms or 0.0) - budgets["latency_ms"])
        if "energy_mj" in budgets:
            trial.set_constraint("energy_mj", (rec.energy_mj or 0.0) - budgets["energy_mj"])
        return
    worst = [max(slack(f, budgets).values(), default=0.0) for f in rec.boards.values()]
    trial.set_constraint("budgets", min(worst))
