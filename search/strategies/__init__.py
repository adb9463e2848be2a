"""Search strategies, chosen by name (``random``, ``evolution``, ``differentiable``) or given
as an instance."""

from __future__ import annotations

from typing import Any

from ..errors import SettingsError
from .base import SearchContext, Strategy
from .differentiable import DifferentiableStrategy
from .evolution import EvolutionStrategy, mutation_prob, population_size
from .random import RandomStrategy

STRATEGIES: dict[str, type[Strategy]] = {
    RandomStrategy.name: RandomStrategy,
    EvolutionStrategy.name: EvolutionStrategy,
    DifferentiableStrategy.name: DifferentiableStrategy,
}


def get_strategy(
    strategy: str | Strategy, *, seed: int | None, options: dict[str, Any] | None = None
) -> Strategy:
    """``options`` are the named strategy's own keyword arguments (``fixed_lambda``)."""
    if isinstance(strategy, Strategy):
        return strategy
    if strategy not in STRATEGIES:
        raise SettingsError(f"unknown strategy '{strategy}' (known: {', '.join(STRATEGIES)})")
    try:
        return STRATEGIES[strategy](seed=seed, **(options or {}))
    except TypeError as exc:
        raise SettingsError(f"strategy '{strategy}' does not take {exc}") from exc


__all__ = [
    "STRATEGIES",
    "DifferentiableStrategy",
    "EvolutionStrategy",
    "RandomStrategy",
    "SearchContext",
    "Strategy",
    "get_strategy",
    "mutation_prob",
    "population_size",
]
