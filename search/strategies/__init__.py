"""Search strategies, chosen by name (``random``, ``evolution``) or given as an instance."""

from __future__ import annotations

from ..errors import SettingsError
from .base import Strategy
from .evolution import EvolutionStrategy, mutation_prob, population_size
from .random import RandomStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    RandomStrategy.name: RandomStrategy,
    EvolutionStrategy.name: EvolutionStrategy,
}


def get_strategy(strategy: str | Strategy, *, seed: int | None) -> Strategy:
    if isinstance(strategy, Strategy):
        return strategy
    if strategy not in STRATEGIES:
        raise SettingsError(f"unknown strategy '{strategy}' (known: {', '.join(STRATEGIES)})")
    return STRATEGIES[strategy](seed=seed)


__all__ = [
    "STRATEGIES",
    "EvolutionStrategy",
    "RandomStrategy",
    "Strategy",
    "get_strategy",
    "mutation_prob",
    "population_size",
]
