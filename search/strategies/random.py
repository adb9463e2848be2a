"""``random``: every gene drawn independently and uniformly (Optuna's RandomSampler)."""

from __future__ import annotations

import optuna

from ..space import SearchSpace
from .base import Strategy


class RandomStrategy(Strategy):
    name = "random"

    def sampler(self, trials: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=self.seed)
