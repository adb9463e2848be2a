"""What the board is and what state it is in, read from procfs and sysfs.

Every file is read relative to ``root`` (``Path("/")`` on a board), so tests point the
functions at a fake tree. Nothing here guesses: a value the board does not expose is ``None``
(or ``{}``/``[]`` where the key holds a collection), never a default that looks real.
Units are in the key names; "MB" means MiB (the kernel's kB are KiB).

- `static_facts` once per session: hardware, OS and runtime versions.
- `dynamic_state` before and after a measurement: governor, clocks, temperatures;
  `throttle_check` compares two such snapshots.
- `load_average`, `cpu_count` and `busy_sentence`: is other work disturbing the timing?
- `MemoryProbe` gives the peak RSS of this process over one request.
"""

from __future__ import annotations

from .dynamic import dynamic_state, throttle_check
from .load import busy_sentence, cpu_count, load_average
from .memory import MemoryProbe, release_memory
from .static import static_facts

__all__ = [
    "MemoryProbe",
    "busy_sentence",
    "cpu_count",
    "dynamic_state",
    "load_average",
    "release_memory",
    "static_facts",
    "throttle_check",
]
