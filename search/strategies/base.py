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
from typing import TYPE_CHECKING, Any, ClassVar

from ..space import Candidate, SearchSpace

if TYPE_CHECKING:
    import optuna


class Strategy(abc.ABC):
    """Base class of search strategies. Subclasses set ``name`` and build a sampler."""

    name: ClassVar[str]

    def __init__(self, *, seed: int | None = 0) -> None:
        self.seed = seed

    @abc.abstractmethod
    def sampler(self, trials: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
        """The Optuna sampler for a search of ``trials`` trials over ``space``."""

    def propose(self, trial: optuna.Trial, space: SearchSpace) -> Candidate:
        """The candidate for ``trial``; the default asks the sampler for every gene."""
        return space.suggest(trial.suggest_categorical)

    def after_trial(self, trial: optuna.trial.FrozenTrial, record: Any) -> None:  # noqa: B027
        """Called once a trial is told (measured, pruned or failed). No-op by default."""

    def describe(self) -> str:
        return f"{self.name} (seed {self.seed})"
