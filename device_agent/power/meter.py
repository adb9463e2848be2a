"""The one interface every power sensor implements."""

from __future__ import annotations

import abc
from typing import Optional, Tuple

#: ``read()`` returns instantaneous watts.
KIND_POWER = "power"
#: ``read()`` returns a cumulative energy counter in joules.
KIND_ENERGY = "energy"
KINDS: Tuple[str, ...] = (KIND_POWER, KIND_ENERGY)

#: What a meter covers, in the order discovery prefers them: a whole-board figure is
#: what a user of "energy per inference" expects; the others are labelled partial.
SCOPES: Tuple[str, ...] = ("board", "pmic-rails", "rail", "cpu-package", "gpu")


class PowerMeter(abc.ABC):
    """A sensor that can be read again and again during a benchmark.

    :param source: says exactly what is measured, e.g. ``"jetson-ina3221:VDD_IN ..."``;
        :meth:`Discovery.select` matches user requests against it.
    :param kind: ``"power"`` (watts) or ``"energy"`` (cumulative joules).
    :param scope: one of :data:`SCOPES`.
    :param wrap_j: for energy counters, the value at which the counter wraps to 0.
    :param update_interval_s: the sensor's own update period, when it is known.
    """

    def __init__(
        self,
        source: str,
        kind: str,
        scope: str,
        wrap_j: Optional[float] = None,
        update_interval_s: Optional[float] = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
        self.source = source
        self.kind = kind
        self.scope = scope
        self.wrap_j = wrap_j
        self.update_interval_s = update_interval_s

    @abc.abstractmethod
    def read(self) -> float:
        """Return watts (kind "power") or cumulative joules (kind "energy").

        :raises PowerReadError: when no honest number can be read.
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.source!r} kind={self.kind} scope={self.scope}>"
