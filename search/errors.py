"""Every error the search raises on purpose derives from :class:`SearchError`."""

from __future__ import annotations


class SearchError(Exception):
    """Root of the search's own errors."""


class SpaceError(SearchError, ValueError):
    """A search space that cannot be built (an empty choice list, an unknown layer type)."""


class InvalidCandidate(SpaceError):  # noqa: N818 - an outcome that is counted, named as such
    """A candidate whose shapes do not work (spatial size below 1); ``layer`` is its index."""

    def __init__(self, message: str, layer: int) -> None:
        super().__init__(message)
        self.layer = layer


class DataError(SearchError, ValueError):
    """Data that does not fit the space: wrong shape, too few samples, unreadable file."""


class SettingsError(SearchError, ValueError):
    """A search setting that is wrong (unknown strategy or optimizer, a budget <= 0, a resume
    whose settings differ from the run directory's)."""


class InfeasibleBudgetError(SearchError):
    """No candidate measured within the budget. ``smallest_ms`` is the lowest latency
    statistic measured (None when nothing was measured); the run's result is kept."""

    def __init__(self, message: str, *, smallest_ms: float | None, stat: str) -> None:
        super().__init__(message)
        self.smallest_ms, self.stat = smallest_ms, stat
