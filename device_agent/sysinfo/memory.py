"""Peak resident memory of a process over one request."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Optional

from ._files import read_text


class MemoryProbe:
    """Peak resident memory of one process (this one by default) over one request.

    Call `reset_peak` before the request and `peak_mb` after it. Until a reset succeeds,
    VmHWM counts from process start.
    """

    def __init__(self, root: Path = Path("/"), pid: str = "self") -> None:
        self._dir = root / "proc" / pid
        self._pid = pid
        self._reset_ok = False

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (``echo 5 > clear_refs``, Linux >= 4.0)."""
        try:  # O_WRONLY without O_CREAT: never create the file in a tree that lacks it
            fd = os.open(str(self._dir / "clear_refs"), os.O_WRONLY)
            try:
                os.write(fd, b"5")
            finally:
                os.close(fd)
        except OSError:  # missing file, no permission, or EINVAL on an older kernel
            self._reset_ok = False
            return False
        self._reset_ok = True
        return True

    def _status_mb(self, field: str) -> Optional[float]:
        text = read_text(self._dir / "status") or ""
        m = re.search(rf"^{field}:\s+(\d+)\s*kB", text, re.MULTILINE)
        return int(m.group(1)) / 1024 if m else None

    def rss_mb(self) -> Optional[float]:
        """The current resident set size (VmRSS) in MiB."""
        return self._status_mb("VmRSS")

    def peak_mb(self) -> Optional[float]:
        """The peak resident set size in MiB; see `source` for since when."""
        hwm = self._status_mb("VmHWM")
        if hwm is not None or self._pid != "self":
            return hwm
        try:
            import resource
        except ImportError:
            return None
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024

    @property
    def source(self) -> str:
        """Where `peak_mb` comes from, and since when it counts."""
        if self._status_mb("VmHWM") is None:
            return "ru_maxrss since process start"
        if self._reset_ok:
            return "VmHWM since reset"
        return "VmHWM since process start (clear_refs unavailable)"


def release_memory() -> None:
    """Return freed memory to the OS, so RSS (and the next peak) stop counting it."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc only; others lack the call
        ctypes.CDLL("libc.so.6").malloc_trim(0)
