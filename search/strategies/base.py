"""The strategy interface: what proposes the next candidate.

Modelled on Optuna's ``samplers/_base.py``: a small abstract class, seeded, injected into
the search (``Searcher(strategy=...)``), with no-op hooks. A strategy never owns storage:
the search creates the study (the run directory's SQLite file, or the user's ``storage=``)
and hands the strategy each trial.

The default ``propose`` asks the trial for every gene of the space (so the Optuna sampler
the strategy returns decides), which is all ``random`` and ``evolution`` need. A strategy
that derives candidates another way (a supernet, issue 9) overrides ``propose`` and returns
the candidate it wants measured, recording its genes with ``trial.suggest_categorical`` so
the study stays a complete record.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..space import Candidate, SearchSpace

if TYPE_CHECKING:
    import optuna

    from ..cost import Limits
    from ..measure import Board
    from ..predict.predictor import Predictor
    from ..predict.table import LatencyTable
    from ..records import TrialRecord
    from ..settings import SearchSettings
    from ..training.data import Split


@dataclass
class SearchContext:
    """What a strategy may use besides the trials: given once to :meth:`Strategy.setup`."""

    space: SearchSpace  #: num_classes set
    data: Split  #: train / validation, NCHW float32
    settings: SearchSettings
    board: Board  #: connected
    out: Path  #: the run directory
    limits: Limits  #: the analytic limits the search prunes by
    table: (
        LatencyTable | None
    )  #: the measured per-layer table; None when the search runs without it
    predictor: Predictor | None


class Strategy(abc.ABC):
    """Base class of search strategies. Subclasses set ``name`` and build a sampler."""

    name: ClassVar[str]
    #: the search opens the measured per-layer table for this strategy even with --predictor off
    needs_table: ClassVar[bool] = False
    #: whether ``predictor`` defaults to on (a candidate predicted far over budget is not trained)
    predictor_default: ClassVar[bool] = False
    #: whether the strategy can search for several targets at once (one study, each
    #: candidate measured on every target, one latency objective per target)
    several_targets: ClassVar[bool] = True

    def __init__(self, *, seed: int | None = 0) -> None:
        self.seed = seed

    @abc.abstractmethod
    def sampler(self, trials: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
        """The Optuna sampler for a search of ``trials`` trials over ``space``."""

    def setup(self, context: SearchContext) -> None:  # noqa: B027
        """Called once before the first trial. No-op by default."""

    def propose(self, trial: optuna.Trial, space: SearchSpace) -> Candidate:
        """The candidate for ``trial``; the default asks the sampler for every gene."""
        return space.suggest(trial.suggest_categorical)

    def after_trial(self, trial: optuna.trial.FrozenTrial, record: Any) -> None:  # noqa: B027
        """Called once a trial is told (measured, pruned or failed). No-op by default."""

    def finished(self, records: list[TrialRecord]) -> bool:
        """True to end the search before ``trials`` (a strategy that knows it is done)."""
        return False

    def options(self) -> dict[str, Any]:
        """The strategy's own settings, as the run directory records them (a resume must
        match them)."""
        return {}

    def describe(self) -> str:
        return f"{self.name} (seed {self.seed})"
