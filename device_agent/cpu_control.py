"""Measurement control: pin the agent to some CPUs, set a cpufreq governor for the run.

Both are undone on every path: the previous affinity and the previous governors come back
whether the benchmark ends, fails or is aborted (not if the agent itself is killed). The
sysfs root is injectable, so tests point it at a fake tree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from .errors import AgentError
from .protocol import BenchSettings, ErrorCode
from .sysinfo._files import CPU_DIR, cpu_dirs, read_text


def current_affinity() -> Optional[List[int]]:
    """The CPUs this thread may run on, or None where the OS cannot say (not Linux)."""
    getter = getattr(os, "sched_getaffinity", None)
    return sorted(getter(0)) if getter is not None else None


@contextlib.contextmanager
def pinned(cpus: Optional[Sequence[int]]) -> Iterator[Optional[List[int]]]:
    """Run the block on ``cpus`` (None: as it is); yields the CPUs in use.

    ``sched_setaffinity(0)`` pins the calling thread; onnxruntime's pool threads inherit the
    affinity when a session is created, which is why the session cache keys on it.
    """
    before = current_affinity()
    if cpus is None:
        yield before
        return
    if before is None:
        raise AgentError(ErrorCode.NOT_PERMITTED, "this OS cannot pin the agent to CPUs")
    missing = [c for c in cpus if c not in before]
    if missing:
        raise AgentError(
            ErrorCode.BAD_REQUEST,
            f"CPU {', '.join(map(str, missing))} is not available to the agent; it may use "
            f"CPUs {', '.join(map(str, before))}",
        )
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        raise AgentError(ErrorCode.NOT_PERMITTED, f"cannot pin the agent to {cpus}: {exc}") from exc
    try:
        yield current_affinity()
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, before)


def _write(path: Path, text: str) -> None:
    fd = os.open(str(path), os.O_WRONLY | os.O_TRUNC)  # no O_CREAT: never create files in sysfs
    try:
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)


class GovernorControl:
    """Set ``governor`` on the given CPUs (all CPUs with cpufreq when None) and restore it.

    ``check`` refuses before anything is changed: ``not_permitted`` where a CPU has no
    cpufreq governor file or it is not writable, ``bad_request`` for a governor the kernel
    does not offer. ``report`` is the reply's ``environment.governor_request``.
    """

    def __init__(self, root: Path, governor: str, cpus: Optional[Sequence[int]]) -> None:
        self.governor = governor
        self.root = root
        if cpus is None:
            found = [(n, d) for n, d in cpu_dirs(root) if (d / "cpufreq").exists()]
        else:
            found = [(n, root / CPU_DIR / f"cpu{n}") for n in cpus]
        self._files: List[Tuple[str, Path]] = [
            (f"cpu{n}", d / "cpufreq" / "scaling_governor") for n, d in found
        ]
        self.previous: Dict[str, str] = {}
        self.applied = False
        self.restored = False
        self.reason: Optional[str] = None

    def check(self) -> None:
        if not self._files:
            raise AgentError(
                ErrorCode.NOT_PERMITTED,
                f"cannot set governor {self.governor!r}: the board has no cpufreq governors "
                f"under {self.root / CPU_DIR}",
            )
        for cpu, path in self._files:
            if not path.is_file() or not os.access(str(path), os.W_OK):
                why = "does not exist" if not path.exists() else "is not writable by the agent"
                raise AgentError(
                    ErrorCode.NOT_PERMITTED,
                    f"cannot set governor {self.governor!r}: {cpu}'s {path} {why}; run the "
                    "agent as a user that may write cpufreq files, or leave the governor alone",
                )
            offered = (read_text(path.parent / "scaling_available_governors") or "").split()
            if offered and self.governor not in offered:
                raise AgentError(
                    ErrorCode.BAD_REQUEST,
                    f"governor {self.governor!r} is not offered by {cpu}; it offers: "
                    f"{', '.join(offered)}",
                )
            self.previous[cpu] = (read_text(path) or "").strip()

    def apply(self) -> None:
        done: List[Tuple[str, Path]] = []
        try:
            for cpu, path in self._files:
                _write(path, self.governor)
                done.append((cpu, path))
        except OSError as exc:
            self._put_back(done)
            raise AgentError(
                ErrorCode.NOT_PERMITTED,
                f"cannot set governor {self.governor!r} on {self._files[len(done)][0]}: {exc}",
            ) from exc
        self.applied = True

    def restore(self) -> None:
        if self.applied:
            self.restored = self._put_back(self._files)

    def _put_back(self, files: Sequence[Tuple[str, Path]]) -> bool:
        failed: List[str] = []
        for cpu, path in files:
            try:
                if self.previous.get(cpu):
                    _write(path, self.previous[cpu])
            except OSError as exc:
                failed.append(f"{cpu}: {exc}")
        if failed:
            self.reason = "could not restore the previous governor on " + "; ".join(failed)
        return not failed

    def report(self) -> Dict[str, Any]:
        return {
            "requested": self.governor,
            "applied": self.applied,
            "previous": dict(self.previous),
            "restored": self.restored,
            "reason": self.reason,
        }


@contextlib.contextmanager
def governor_set(control: Optional[GovernorControl]) -> Iterator[None]:
    """Apply a checked ``control`` for the block (nothing when None), restore it after."""
    if control is None:
        yield
        return
    control.apply()
    try:
        yield
    finally:
        control.restore()


def cap_threads(settings: BenchSettings, cores: Optional[int]) -> Tuple[BenchSettings, List[str]]:
    """Settings with thread counts no higher than ``cores``, and a note for each cut."""
    if not cores:
        return settings, []
    notes: List[str] = []
    capped = dataclasses.replace(settings)
    for name, label in (("threads", "intra-op threads"), ("inter_op_threads", "inter-op threads")):
        asked = getattr(settings, name)
        if asked > cores:
            setattr(capped, name, cores)
            notes.append(f"{label} capped at {cores} (the CPUs the agent may use); {asked} asked")
    return (capped, notes) if notes else (settings, notes)
