"""A strategy for tests: a search whose trials the test knows."""

from __future__ import annotations

import optuna

from search.space import Candidate, SearchSpace
from search.strategies import Strategy


class ListStrategy(Strategy):
    """Proposes the given candidates in order (trial n: the n-th, cycling)."""

    name = "list"

    def __init__(self, encodings: list[str]) -> None:
        super().__init__(seed=0)
        self.candidates = [Candidate.decode(e) for e in encodings]

    def sampler(self, trials: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=0)

    def propose(self, trial: optuna.Trial, space: SearchSpace) -> Candidate:
        return self.candidates[trial.number % len(self.candidates)]
