"""How a several-target trial's figures combine: each target's memory limit, the outcome
of a trial from its targets' outcomes, the predictions kept per target, and when the
predictor skips a candidate (only when it is over budget on every target).

A one-target search goes through the same functions with one name and no
``TrialRecord.boards``; they then do what the search did before there were several.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .. import records
from ..cost import Cost, Limits
from ..records import BoardFigures, TrialRecord

if TYPE_CHECKING:
    from ..measure import Board
    from ..predict.predictor import Prediction


def target_limits(boards: Mapping[str, Board]) -> dict[str, Limits]:
    """Each target's own memory limit, from its profile (several targets only)."""
    if len(boards) < 2:
        return {}
    out = {}
    for name, board in boards.items():
        profile = board.profile()
        if profile.memory.total_mb:
            out[name] = Limits(
                profile_memory_mb=float(profile.memory.total_mb), profile=profile.name
            )
    return out


def mark_unfit(rec: TrialRecord, c: Cost, limits: Mapping[str, Limits]) -> set[str]:
    """The targets whose memory the candidate exceeds: recorded as pruned there (and then
    not measured there)."""
    unfit = set()
    for name, limit in limits.items():
        if limit.violated(c) is not None:
            rec.boards[name] = BoardFigures(
                feasible=False,
                outcome=records.PRUNED_PROFILE_MEMORY,
                reason=limit.describe("profile_memory", c),
            )
            unfit.add(name)
    return unfit


def settle(rec: TrialRecord, names: list[str]) -> None:
    """A several-target trial's outcome from its targets': measured when measured on every
    target; failed when a board failed it; else pruned (too big for some board)."""
    if len(names) < 2 or rec.outcome not in records.TARGET_OUTCOMES:
        return
    outcomes = {n: rec.boards.get(n, BoardFigures()).outcome for n in names}
    if all(o == records.MEASURED for o in outcomes.values()):
        rec.outcome, rec.reason = records.MEASURED, None
        return
    others = [o for o in outcomes.values() if o != records.MEASURED]
    failed = records.FAILED in others or None in others
    rec.outcome = records.FAILED if failed else records.PRUNED_PROFILE_MEMORY
    why = [
        f"{n}: {rec.boards[n].reason}"
        for n, o in outcomes.items()
        if o != records.MEASURED and n in rec.boards and rec.boards[n].reason
    ]
    rec.reason = "; ".join(why) or rec.reason


def keep_predictions(
    rec: TrialRecord, predictions: Mapping[str, Prediction], names: list[str]
) -> None:
    """Each target's prediction in its figures (several targets); the first target's in the
    record's own ``predicted``."""
    if len(names) > 1:
        for name, prediction in predictions.items():
            rec.boards.setdefault(name, BoardFigures()).predicted = prediction
    rec.predicted = predictions.get(names[0])


def skip_reason(reasons: Mapping[str, str | None]) -> str | None:
    """Why a candidate is not trained (each target's predictor's reason, or None): only
    when it is predicted over budget on every target."""
    if not reasons or any(r is None for r in reasons.values()):
        return None
    if len(reasons) == 1:
        return next(iter(reasons.values()))
    return "; ".join(f"{n}: {r}" for n, r in reasons.items())
