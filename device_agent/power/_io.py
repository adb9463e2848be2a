"""Reading sysfs attributes and running commands, with errors that name what failed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from .errors import CommandError, CommandNotFoundError, PowerReadError

#: Runs a command and returns its standard output; raises CommandError on failure.
CommandRunner = Callable[[Sequence[str]], str]

COMMAND_TIMEOUT_S = 2.0


def read_text(path: Path) -> str:
    """Read a whole sysfs attribute. Opened afresh each time: sysfs values are
    produced on open/read, and a kept-open file would need a seek per read."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError as exc:
        raise PowerReadError(f"{path}: {exc.strerror or exc}", str(path)) from exc


def read_int(path: Path) -> int:
    """Read a sysfs attribute that holds one integer."""
    text = read_text(path)
    try:
        return int(text)
    except ValueError as exc:
        raise PowerReadError(f"{path}: not an integer: {text[:40]!r}", str(path)) from exc


def hwmon_update_interval_s(directory: Path) -> Optional[float]:
    """A hwmon device's ``update_interval`` (ms, the period at which its readings change)
    in seconds; None where the driver has none (ina219/ina220) or it cannot be read."""
    try:
        ms = read_int(directory / "update_interval")
    except PowerReadError:
        return None
    return ms / 1000.0 if ms > 0 else None


def under(root: Path, absolute: str) -> Path:
    """``absolute`` (e.g. "/sys/class/hwmon") placed under ``root`` (a fake tree in tests)."""
    return root / absolute.lstrip("/")


def run_subprocess(argv: Sequence[str]) -> str:
    """The default :data:`CommandRunner`: subprocess with a 2 s timeout."""
    shown = " ".join(argv)
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise CommandNotFoundError(f"{argv[0]}: not found", argv) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"`{shown}` timed out after {COMMAND_TIMEOUT_S:g} s", argv) from exc
    except OSError as exc:
        raise CommandError(f"`{shown}` could not run: {exc}", argv) from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[:200]
        raise CommandError(f"`{shown}` exited {proc.returncode}: {detail}", argv)
    return proc.stdout


def natural_key(path: Path) -> Tuple[str, int]:
    """Sort key that puts hwmon2 before hwmon10 and 1-0040 before 1-0041."""
    match = re.match(r"^(.*?)(\d+)$", path.name)
    if match is None:
        return (path.name, -1)
    return (match.group(1), int(match.group(2)))


def subdirs(base: Path, pattern: str) -> List[Path]:
    """Directories (or links to them, as sysfs uses) in ``base`` whose name fully matches
    ``pattern``, in natural order; an absent or unreadable ``base`` gives none."""
    try:
        entries = list(base.iterdir())
    except OSError:
        return []
    regex = re.compile(pattern)
    found = [p for p in entries if regex.fullmatch(p.name) and p.is_dir()]
    return sorted(found, key=natural_key)
