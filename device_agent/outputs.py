"""What one run of a model may allocate: its outputs, and the tensors on the way to them.

An 89-byte model (Expand, Tile, ConstantOfShape to a large shape) can make onnxruntime
allocate gigabytes in one run. Three checks bound it, each naming the cap
(``--max-output-mb``) and answering ``output_too_large``:

1. Before any run, the output shapes onnxruntime inferred at load: where their dims are
   known (static, or a symbolic name the inputs give a size), the bytes are worked out
   from shape and dtype and refused above the cap.
2. The first run of a benchmark, the one that grows onnxruntime's arena, runs under a
   memory guard: ``RLIMIT_DATA`` (private writable memory, mmap included, Linux >= 4.7)
   is set to what the agent holds now plus the cap, so a larger allocation fails at once
   instead of filling the board's memory. Later runs on the same inputs reuse the arena.
3. After that run, the outputs it returned are added up, for where the guard cannot be set.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .errors import AgentError
from .inputs import ORT_DTYPES
from .protocol import ErrorCode

log = logging.getLogger("device_agent")

#: Allowed above the cap for what a run allocates besides tensors (thread scratch, the
#: result list, onnxruntime's bookkeeping), so a model near the cap still runs.
GUARD_SLACK = 64 * 1024 * 1024


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _too_large(what: str, cap: int) -> AgentError:
    return AgentError(
        ErrorCode.OUTPUT_TOO_LARGE,
        f"{what}; the agent's output cap is {cap} bytes ({_mib(cap)}), for the outputs of one "
        "run and the tensors on the way to them; use smaller inputs (dims), or raise the cap "
        "with the agent's --max-output-mb",
    )


def input_sizes(described: Sequence[Mapping[str, Any]]) -> Dict[str, int]:
    """Symbolic dim names and the sizes the inputs gave them (``Feeds.described``)."""
    sizes: Dict[str, int] = {}
    for entry in described:
        for dim, got in zip(entry.get("declared") or [], entry.get("shape") or []):
            if isinstance(dim, str):
                sizes.setdefault(dim, int(got))
    return sizes


def check_declared(declared: Sequence[Any], sizes: Mapping[str, int], cap: int) -> None:
    """Refuse outputs (``session.get_outputs()``) whose known dims already exceed ``cap``.

    A dim that is neither static nor named by the inputs counts as 1: the figure is the
    least the output can take, so a model is never refused for what it might do.
    """
    total = 0
    for arg in declared:
        dtype = ORT_DTYPES.get(getattr(arg, "type", ""))
        shape = getattr(arg, "shape", None)
        if dtype is None or not isinstance(shape, (list, tuple)):
            continue  # sequences, maps, strings: sized only once they exist
        known: List[Any] = []
        count = 1
        for dim in shape:
            size = dim if isinstance(dim, int) and dim >= 0 else sizes.get(str(dim), 1)
            count *= int(size)
            known.append(dim if isinstance(dim, int) else f"{dim}={size}" if dim else None)
        nbytes = count * int(np.dtype(dtype).itemsize)
        total += nbytes
        if total > cap:
            raise _too_large(
                f"output '{arg.name}' of shape {known} ({np.dtype(dtype)}) needs at least "
                f"{nbytes} bytes ({_mib(nbytes)})",
                cap,
            )


def produced_bytes(outputs: Any) -> int:
    """Bytes of the arrays a run returned (lists and dicts of them included)."""
    if isinstance(outputs, np.ndarray):
        return int(outputs.nbytes)
    if isinstance(outputs, dict):
        return sum(produced_bytes(v) for v in outputs.values())
    if isinstance(outputs, (list, tuple)):
        return sum(produced_bytes(v) for v in outputs)
    return 0


def _data_bytes() -> Optional[int]:
    """This process's private writable memory (``VmData``), or None where unknown."""
    try:
        with open("/proc/self/status") as fh:
            status = fh.read()
    except OSError:
        return None
    m = re.search(r"^VmData:\s+(\d+)\s*kB", status, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def _is_allocation_failure(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, MemoryError) or "bad_alloc" in text or "Failed to allocate" in text


class OutputGuard:
    """The three checks for one benchmark, with the agent's cap (``max_bytes``).

    ``check_session`` before the first run; ``arm()`` just before it and ``disarm(outputs)``
    just after; ``error_for(exc)`` when it failed. Arming and disarming are system calls,
    so the caller keeps them out of any timed region.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.armed = False
        self._old: Any = None

    def check_session(self, session: Any, described: Sequence[Mapping[str, Any]]) -> None:
        """Check 1, before the first run."""
        check_declared(session.get_outputs(), input_sizes(described), self.max_bytes)

    def arm(self) -> None:
        """Check 2: ``RLIMIT_DATA`` at what the agent holds now plus the cap (and a slack)."""
        try:
            import resource
        except ImportError:  # not a Unix: checks 1 and 3 only
            return
        held = _data_bytes()
        if held is None or self.armed:
            return
        try:
            soft, hard = self._old = resource.getrlimit(resource.RLIMIT_DATA)
            limit = held + self.max_bytes + GUARD_SLACK
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            if soft == resource.RLIM_INFINITY or limit < soft:
                resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
                self.armed = True
        except (OSError, ValueError) as exc:
            log.info("no memory guard for the first run: %s", exc)

    def lift(self) -> bool:
        """Put the old limit back; whether the guard was in force."""
        if not self.armed:
            return False
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, self._old)
        self.armed = False
        return True

    def disarm(self, outputs: Any = None) -> None:
        """After the first run: lift the guard; check 3 on the outputs it returned."""
        self.lift()
        nbytes = produced_bytes(outputs)
        if nbytes > self.max_bytes:
            raise _too_large(
                f"the outputs of one run took {nbytes} bytes ({_mib(nbytes)})", self.max_bytes
            )

    def error_for(self, exc: BaseException) -> Optional[AgentError]:
        """Lift the guard; ``output_too_large`` if ``exc`` is an allocation it refused."""
        if self.lift() and _is_allocation_failure(exc):
            return _too_large(
                "the first run of the model asked for more memory than the cap allows, and "
                "was stopped",
                self.max_bytes,
            )
        return None
