"""Reading procfs/sysfs files under an injectable root without raising."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional, Tuple

CPU_DIR = "sys/devices/system/cpu"


def read_text(path: Path) -> Optional[str]:
    """The text of a file, or None when it is missing or unreadable (sysfs may say EINVAL)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def read_int(path: Path) -> Optional[int]:
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:  # e.g. "<unknown>" from scaling_cur_freq
        return None


def cpu_dirs(root: Path) -> List[Tuple[int, Path]]:
    """(N, path) for each /sys/devices/system/cpu/cpuN, sorted by N."""
    base = root / CPU_DIR
    try:
        entries = list(base.iterdir())
    except OSError:
        return []
    found = [(int(p.name[3:]), p) for p in entries if re.fullmatch(r"cpu\d+", p.name)]
    return sorted(found)
