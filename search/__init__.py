"""The hardware-aware architecture search: candidates trained here, measured on the board.

``SearchSpace`` is light (no torch); ``Searcher`` and the rest import torch and Optuna when
first used, so ``hwnas`` (which loads this package as a plugin) starts fast and works
without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    DataError,
    InfeasibleBudgetError,
    SearchError,
    SettingsError,
    SpaceError,
)
from .space import Candidate, InvalidCandidate, Layer, SearchSpace

if TYPE_CHECKING:
    from .api import Searcher
    from .blocks import BlockCandidate, StageSpace, StageSpec
    from .loop.result import SearchedModel, SearchResult
    from .settings import Budgets

_LAZY = {
    "BlockCandidate": "blocks",
    "StageSpace": "blocks",
    "StageSpec": "blocks",
    "Budgets": "settings",
    "Searcher": "api",
    "SearchedModel": "loop.result",
    "SearchResult": "loop.result",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        try:
            module = importlib.import_module(f".{_LAZY[name]}", __name__)
        except ImportError as exc:
            raise ImportError(
                f"the search needs its extra: pip install 'hwnas-bench[search]' ({exc})"
            ) from exc
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BlockCandidate",
    "Budgets",
    "Candidate",
    "DataError",
    "InfeasibleBudgetError",
    "InvalidCandidate",
    "Layer",
    "SearchError",
    "SearchResult",
    "SearchSpace",
    "SearchedModel",
    "Searcher",
    "SettingsError",
    "SpaceError",
    "StageSpace",
    "StageSpec",
]
