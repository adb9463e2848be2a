"""The loop every finder shares: open each candidate, keep the meters that read, say why not.

A finder knows only its own part: where its candidates are (sysfs directories, channels,
GPU indices) and how to open one. Opening gives a meter to keep, a reason it cannot be
used, or None for a candidate that is not this finder's (another chip's hwmon directory)
and deserves no word. Plugins (see :mod:`device_agent.power.plugins`) may use it too.
"""

from __future__ import annotations

from typing import Callable, Iterable, List, Optional, Tuple, TypeVar, Union

from .errors import PowerReadError
from .meter import PowerMeter

#: What a finder returns: the meters it can read, and why the others were left out.
Found = Tuple[List[PowerMeter], List[str]]

#: What opening one candidate gives: a meter, a reason, or None (not ours: say nothing).
Opened = Union[PowerMeter, str, None]

Candidate = TypeVar("Candidate")
Meter = TypeVar("Meter", bound=PowerMeter)


def probe(
    candidates: Iterable[Candidate],
    open_candidate: Callable[[Candidate], Opened],
    nothing_found: str,
) -> Found:
    """Open every candidate in order; ``nothing_found`` is the reason when none gave
    either a meter or a reason (the finder looked and saw nothing of its kind)."""
    meters: List[PowerMeter] = []
    reasons: List[str] = []
    for candidate in candidates:
        opened = open_candidate(candidate)
        if isinstance(opened, PowerMeter):
            meters.append(opened)
        elif opened is not None:
            reasons.append(opened)
    if not meters and not reasons:
        reasons.append(nothing_found)
    return meters, reasons


def readable(
    meter: Meter, label: str, explain: Optional[Callable[[PowerReadError], str]] = None
) -> Union[Meter, str]:
    """``meter`` if one reading succeeds now, else ``"<label>: <why>"``; ``explain`` words
    the failure (default: the error's own message)."""
    try:
        meter.read()
    except PowerReadError as exc:
        return f"{label}: {explain(exc) if explain else exc}"
    return meter
