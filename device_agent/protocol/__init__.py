"""The hwnas wire protocol: framing, messages, input packs. Shared by agent and host."""

from __future__ import annotations

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
from .tensors import TensorPackError, pack_tensors, unpack_tensors

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
    "encode_frame",
    "pack_tensors",
    "unpack_tensors",
]
