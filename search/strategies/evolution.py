"""``evolution``: multi-objective NSGA-II with constraints (Optuna's NSGAIISampler).

Objectives: validation accuracy (maximised) and measured latency (minimised). Budgets are
recorded per trial with ``trial.set_constraint`` (value - budget; > 0 = violated), which
NSGA-II reads through constrained domination; the sampler's ``constraints_func`` is
deprecated in Optuna 5 and not used. The population is sized for the trial budget: with
Optuna's default of 50, a 40-trial search would never leave its random first generation.
"""

from __future__ import annotations

import optuna

from ..space import SearchSpace
from .base import Strategy


def mutation_prob(space: SearchSpace) -> float:
    """About three genes mutated per child. Optuna's default (one gene in all) mostly hits
    genes the child does not use (a kernel of an fc slot, a slot beyond its depth), so the
    child decodes to its parent and the trial repeats a measured candidate."""
    return min(1.0, 3.0 / max(1, len(space.genes)))


def population_size(trials: int) -> int:
    """About five generations within the budget, at least 4 individuals."""
    return max(4, trials // 5)


class EvolutionStrategy(Strategy):
    name = "evolution"

    def __init__(self, *, seed: int | None = 0, population: int | None = None) -> None:
        super().__init__(seed=seed)
        self.population = population

    def sampler(self, trials: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
        size = self.population or population_size(trials)
        return optuna.samplers.NSGAIISampler(
            population_size=size, mutation_prob=mutation_prob(space), seed=self.seed
        )

    def describe(self) -> str:
        return f"{self.name} (NSGA-II, seed {self.seed})"
