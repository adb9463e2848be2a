"""How busy the board is: load averages, CPUs online, and a sentence when it is too busy."""

from __future__ import annotations

import os
from typing import List, Optional, Sequence


def load_average() -> Optional[List[float]]:
    """The 1/5/15-minute load averages, or None where the OS does not give them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def cpu_count() -> Optional[int]:
    """Logical CPUs online."""
    return os.cpu_count()


def busy_sentence(
    load_start: Optional[Sequence[float]],
    load_end: Optional[Sequence[float]],
    cores: Optional[int],
    threads: int,
) -> Optional[str]:
    """Why the timing may be disturbed by other work, or None when nothing was seen.

    Busy when the 1-minute load at the start or the end is above the number of cores, or
    when the threads the run uses are more than the cores the load at the start leaves
    free (the load at the end counts the run's own threads). A benchmark that just ended
    still weighs in the 1-minute average of the next one's start.
    """
    if not cores:
        return None
    start = load_start[0] if load_start else None
    end = load_end[0] if load_end else None
    high = [
        (when, x) for when, x in (("start", start), ("end", end)) if x is not None and x > cores
    ]
    if len(high) == 2:
        return (
            f"host busy: load {high[0][1]:.1f} at the start and {high[1][1]:.1f} at the end "
            f"on {cores} cores"
        )
    if high:
        return f"host busy: load {high[0][1]:.1f} on {cores} cores at the {high[0][0]}"
    if start is None:
        return None
    free = cores - start
    if threads > free:
        noun = "thread" if threads == 1 else "threads"
        return f"{threads} {noun} on {free:.1f} free cores ({cores} cores, load {start:.1f})"
    return None
