"""The hwnas wire protocol: framing, messages, input packs. Shared by agent and host."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .frames import (
    MAGIC,
    MAX_HEADER,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    DamagedFrame,
    Event,
    Frame,
    FrameDecoder,
    FrameType,
    Skipped,
    encode_frame,
)
from .messages import (
    BENCH_REPLY_SECTIONS,
    BENCH_REPLY_VALUES,
    SAMPLES_DTYPE,
    BenchSettings,
    ErrorCode,
    GraphOptimization,
    Op,
)

if TYPE_CHECKING:
    from .tensors import TensorPackError, TensorPackTooLargeError, pack_tensors, unpack_tensors

_TENSORS = ("TensorPackError", "TensorPackTooLargeError", "pack_tensors", "unpack_tensors")


def __getattr__(name: str) -> Any:
    # Input packs need numpy; framing does not. Importing them lazily lets the agent answer
    # --help and --version (and name a missing numpy in one line) with the stdlib alone.
    if name in _TENSORS:
        from . import tensors

        return getattr(tensors, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BENCH_REPLY_SECTIONS",
    "BENCH_REPLY_VALUES",
    "MAGIC",
    "MAX_HEADER",
    "MAX_PAYLOAD",
    "PROTOCOL_VERSION",
    "SAMPLES_DTYPE",
    "BenchSettings",
    "DamagedFrame",
    "ErrorCode",
    "Event",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "GraphOptimization",
    "Op",
    "Skipped",
    "TensorPackError",
    "TensorPackTooLargeError",
    "encode_frame",
    "pack_tensors",
    "unpack_tensors",
]
