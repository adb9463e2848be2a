"""Chunked uploads: one in flight at a time, verified by sha256 before anything uses it."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Dict, Optional, Union

import numpy as np

from .errors import AgentError
from .model_store import PendingModel
from .protocol import ErrorCode, TensorPackError, TensorPackTooLargeError, unpack_tensors


class PendingInputs:
    """An input pack being uploaded; held in memory (packs are bounded by ``max_bytes``)."""

    def __init__(self, sha256: str, size: int, max_bytes: int) -> None:
        if size > max_bytes:
            raise AgentError(
                ErrorCode.INPUT_TOO_LARGE,
                f"input pack of {size} bytes exceeds the agent's input cap of {max_bytes} "
                "bytes (agent option --max-input-mb)",
            )
        self.sha256 = sha256
        self.size = size
        self.received = 0
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        if self.received + len(data) > self.size:
            raise AgentError(ErrorCode.UPLOAD_STATE, "chunk runs past the declared size")
        self._buf += data
        self.received += len(data)

    def commit(self) -> bytes:
        actual = hashlib.sha256(self._buf).hexdigest()
        if actual != self.sha256:
            raise AgentError(
                ErrorCode.DIGEST_MISMATCH,
                f"input pack hashes to {actual[:16]}…, not the declared {self.sha256[:16]}…",
            )
        return bytes(self._buf)

    def discard(self) -> None:
        self._buf = bytearray()


Pending = Union[PendingModel, PendingInputs]


class Upload:
    """The upload in flight and how far it has come."""

    def __init__(self, pending: Pending) -> None:
        self.pending = pending

    @property
    def received(self) -> int:
        return self.pending.received

    @property
    def complete(self) -> bool:
        return self.pending.received == self.pending.size

    def describe(self) -> str:
        kind = "model" if isinstance(self.pending, PendingModel) else "input pack"
        return (
            f"{kind} {self.pending.sha256[:12]}… ({self.pending.received} of "
            f"{self.pending.size} bytes)"
        )


class InputStore:
    """The last few input packs, unpacked, by sha256 (bounded in total bytes)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._packs: OrderedDict[str, Dict[str, np.ndarray]] = OrderedDict()

    def add(self, sha256: str, data: bytes) -> Dict[str, np.ndarray]:
        try:
            tensors = unpack_tensors(data, self.max_bytes)
        except TensorPackError as exc:
            too_large = isinstance(exc, TensorPackTooLargeError)
            code = ErrorCode.INPUT_TOO_LARGE if too_large else ErrorCode.BAD_INPUT
            raise AgentError(code, str(exc)) from exc
        self._packs[sha256] = tensors
        self._packs.move_to_end(sha256)
        while len(self._packs) > 1 and self._total() > self.max_bytes:
            self._packs.popitem(last=False)
        return tensors

    def clear(self) -> None:
        self._packs.clear()

    def get(self, sha256: str) -> Optional[Dict[str, np.ndarray]]:
        pack = self._packs.get(sha256)
        if pack is not None:
            self._packs.move_to_end(sha256)  # recently used: evicted last
        return pack

    def _total(self) -> int:
        return sum(a.nbytes for pack in self._packs.values() for a in pack.values())
