"""Requests, replies and error codes of the hwnas protocol: the one place they are defined.

The host (`hwnas_bench`) imports this module; the agent implements it. docs/protocol.md
describes the same things for people.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple


class Op(str, enum.Enum):
    """Request operations (the ``op`` field of a REQUEST header)."""

    HELLO = "hello"
    PUT_MODEL = "put_model"
    PUT_INPUTS = "put_inputs"
    BENCH = "bench"
    PROFILE = "profile"
    FETCH = "fetch"
    RESET = "reset"
    SHUTDOWN = "shutdown"


class ErrorCode(str, enum.Enum):
    """``error.code`` of a failed REPLY. The message beside it is for people."""

    BAD_FRAME = "bad_frame"  #: a frame that resending cannot cure (bad header, wrong type)
    FRAME_TOO_LARGE = "frame_too_large"  #: declared lengths above the receiver's limits
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_OP = "unknown_op"
    BAD_REQUEST = "bad_request"  #: a field is missing, of the wrong type or out of range
    UNAUTHORIZED = "unauthorized"  #: TCP mode: hello without the right token
    MODEL_NOT_FOUND = "model_not_found"  #: bench/profile of a sha256 the board does not hold
    MODEL_TOO_LARGE = "model_too_large"
    DIGEST_MISMATCH = "digest_mismatch"  #: an upload's bytes do not hash to the declared sha256
    UPLOAD_STATE = "upload_state"  #: a chunk that belongs to no upload, or out of range
    INVALID_MODEL = "invalid_model"  #: onnxruntime cannot load the model
    BAD_INPUT = "bad_input"  #: inputs do not match the model (shape, dtype, names)
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    RUNTIME_ERROR = "runtime_error"  #: onnxruntime failed while running
    ABORTED = "aborted"  #: the host went away mid-benchmark; the agent stopped it
    DISK_FULL = "disk_full"  #: the board's disk refused a write; the upload was abandoned
    INPUT_TOO_LARGE = "input_too_large"  #: inputs (sent or synthesised) above the agent's cap
    #: what one run of the model allocates (outputs, tensors on the way) above the agent's cap
    OUTPUT_TOO_LARGE = "output_too_large"
    OUT_OF_MEMORY = "out_of_memory"  #: an allocation failed on the board
    BUSY = "busy"  #: TCP mode: another client holds the board's benchmark; try again later
    NOT_PERMITTED = "not_permitted"  #: the agent may not do what was asked (e.g. set a governor)
    INTERNAL = "internal"  #: a bug in the agent; it keeps serving


class GraphOptimization(str, enum.Enum):
    DISABLE = "disable"
    BASIC = "basic"
    EXTENDED = "extended"
    ALL = "all"


#: (name, lowest, highest) of each integer setting
_INT_RANGES = (
    ("threads", 0, 1024),
    ("inter_op_threads", 0, 1024),
    ("warmup_runs", 0, 10**9),  # max_time_s ends a long warm-up
    ("seed", 0, 2**32 - 1),  # numpy's seed range
    ("min_iterations", 1, 10**9),
    ("max_iterations", 1, 10**9),
)


@dataclass
class BenchSettings:
    """How to run one benchmark. Defaults follow TFLite's benchmark_model and onnxruntime_perf_test.

    The timed loop stops when ``min_iterations`` AND ``min_time_s`` are both reached, or
    when ``max_time_s`` or ``max_iterations`` is reached first (``stopped_by`` says which).
    """

    provider: str = "CPUExecutionProvider"
    threads: int = 0  #: intra-op threads; 0 lets onnxruntime choose
    inter_op_threads: int = 0
    graph_optimization: str = GraphOptimization.ALL.value
    warmup_runs: int = 1
    warmup_min_s: float = 0.5
    min_iterations: int = 50
    min_time_s: float = 1.0
    max_time_s: float = 60.0
    max_iterations: int = 1_000_000
    #: values for symbolic/dynamic input dimensions, e.g. {"batch": 8}; unnamed ones default to 1
    dims: Optional[Dict[str, int]] = None
    #: sha256 of an input pack sent with put_inputs; None = synthesise from the model's shapes
    inputs: Optional[str] = None
    seed: int = 0
    #: the slowest the power sampler polls; a meter that says how often its value changes is
    #: polled at that interval instead, down to 1 ms (device_agent.power.sample_interval_s)
    power_interval_s: float = 0.1
    #: source name of the power meter to use; None = the board's preferred meter (never a
    #: GPU's, NVML, for a model on the CPU execution provider)
    power_meter: Optional[str] = None
    #: CPUs the agent pins itself to (sched_setaffinity) before the session is made; None = all
    cpus: Optional[List[int]] = None
    #: cpufreq governor to set for the timed window (restored after); None = leave it alone
    governor: Optional[str] = None

    def to_wire(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> BenchSettings:
        """Build settings from a request, ignoring keys that are not settings."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def validate(self) -> None:
        """Raise ValueError naming the first field of the wrong type or out of range."""
        # upper bounds too: a mistyped 2**70 is refused, never handed to onnxruntime or numpy
        for name, low, high in _INT_RANGES:
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}")
            if value > high:
                raise ValueError(f"{name} must be <= {high}")
        if self.min_iterations > self.max_iterations:
            raise ValueError("min_iterations must not exceed max_iterations")
        for name in ("warmup_min_s", "min_time_s"):
            if not _is_number(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a number >= 0")
        for name in ("max_time_s", "power_interval_s"):
            if not _is_number(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a number > 0")
        if self.min_time_s > self.max_time_s:
            raise ValueError("min_time_s must not exceed max_time_s")
        for name in ("provider", "graph_optimization"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string")
        if self.graph_optimization not in {g.value for g in GraphOptimization}:
            allowed = ", ".join(g.value for g in GraphOptimization)
            raise ValueError(f"graph_optimization must be one of {allowed}")
        for name in ("inputs", "power_meter"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string or null")
        if self.dims is not None and not isinstance(self.dims, dict):
            raise ValueError("dims must map dimension names to integers >= 1")
        for key, value in (self.dims or {}).items():
            if not isinstance(key, str):
                raise ValueError(f"dims: names must be strings, not {key!r}")
            if not _is_int(value) or value < 1:
                raise ValueError(f"dims: {key!r} must be an integer >= 1, not {value!r}")
        cpus_ok = self.cpus is None or (
            isinstance(self.cpus, list)
            and len(self.cpus) > 0
            and all(_is_int(c) and 0 <= c < 4096 for c in self.cpus)
            and len(set(self.cpus)) == len(self.cpus)
        )
        if not cpus_ok:
            raise ValueError("cpus must be a non-empty list of distinct CPU numbers")
        if self.governor is not None and not (
            isinstance(self.governor, str)
            and 0 < len(self.governor) <= 32
            and all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in self.governor)
        ):
            raise ValueError("governor must be a cpufreq governor name such as 'performance'")

    def expected_duration_s(self) -> float:
        """Upper bound on the time the timed part may take, for the host's timeouts."""
        return self.warmup_min_s + self.max_time_s


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A finite int or float (no bool, NaN or infinity)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: The sections of a bench REPLY header, the one place they are named. The host builds its
#: ``Measurement`` from them with a builder that ignores keys it does not know, so an agent
#: that adds a key never breaks an older host. Objects: section -> dict; values: plain JSON.
BENCH_REPLY_SECTIONS: Tuple[str, ...] = ("latency", "power", "memory", "environment")
BENCH_REPLY_VALUES: Tuple[str, ...] = (
    "model",
    "settings",
    "inputs",
    "throughput_ips",
    "stopped_by",
    "window_s",
    "warmup",
    "notes",  #: list of sentences: what the agent adjusted (threads capped, warm-up cut short)
    "samples",
)

#: Samples travel as the raw payload of a bench REPLY: little-endian int64 nanoseconds.
SAMPLES_DTYPE = "<i8"
