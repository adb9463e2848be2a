"""Analytic cost of a candidate: parameters, FLOPs, peak activation memory. No torch.

Conventions (the tests check them against hand-computed values and the ONNX graph):
- FLOPs = 2 x the multiply-accumulates of the conv and linear layers, batch 1; bias adds,
  ReLU and max-pool comparisons are not counted.
- Peak activation memory: float32, batch 1, the largest (input + output) pair of any node of
  the exported graph (nodes run one after another, so those two are what must be live).
- ``memory_mb`` = weights + peak activations: what the model itself needs on the board,
  before the runtime's own footprint.

A lookup table of measured per-layer latency (the predictor) is a separate module beside
this one; nothing here is a latency.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .errors import SpaceError
from .space import FLOAT_BYTES, MAX_CANDIDATE_MB, MB, Candidate


@dataclass(frozen=True)
class Cost(Mapping[str, Any]):
    """A candidate's analytic cost. Also a read-only mapping of :meth:`to_dict` (a trial
    record's ``cost["memory_mb"]``, as when the record held the dict)."""

    params: int
    flops: int
    peak_activation_bytes: int

    @property
    def weights_mb(self) -> float:
        return self.params * FLOAT_BYTES / MB

    @property
    def activation_mb(self) -> float:
        return self.peak_activation_bytes / MB

    @property
    def memory_mb(self) -> float:
        return self.weights_mb + self.activation_mb

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "memory_mb": round(self.memory_mb, 6)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cost:
        """From ``to_dict()`` (``memory_mb`` is derived, so not read); ValueError for
        anything else."""
        counts = {}
        for key in ("params", "flops", "peak_activation_bytes"):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"cost: {key} must be an integer >= 0, not {value!r}")
            counts[key] = value
        return cls(**counts)

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def node_tensors(candidate: Candidate) -> list[int]:
    """Element counts of the graph's tensors in order: input, then every node's output.

    Mirrors build.layer_modules node for node (conv+relu, dw+relu+pw+relu, pool, flatten,
    linear+relu, classifier).
    """
    h, w, c = candidate.input_shape
    sizes = [h * w * c]
    flat = False
    for (shape_in, shape_out), layer in zip(candidate.shapes(), candidate.layers, strict=False):
        if layer.kind == "conv":
            sizes += [_size(shape_out)] * 2
        elif layer.kind == "dwconv":
            depthwise = (shape_in[0], shape_out[1], shape_out[2])
            sizes += [_size(depthwise)] * 2 + [_size(shape_out)] * 2
        elif layer.kind == "pool":
            sizes.append(_size(shape_out))
        elif layer.kind == "fc":
            if not flat:
                sizes.append(shape_in[0])
                flat = True
            sizes += [layer.width] * 2
    if not flat:
        sizes.append(sizes[-1])
    sizes.append(candidate.num_classes)
    return sizes


def cost(candidate: Candidate) -> Cost:
    """Raises space.InvalidCandidate for a candidate whose shapes do not work. A block
    candidate's is its blocks' (``search.blocks``: BatchNorm folded, every ONNX node)."""
    from .blocks.candidate import BlockCandidate

    if isinstance(candidate, BlockCandidate):
        counts = candidate.block_cost()
        return Cost(counts.params, counts.flops, counts.peak_activation_bytes)
    shapes = candidate.shapes()
    params = macs = 0
    for (shape_in, shape_out), layer in zip(shapes, candidate.layers, strict=False):
        if layer.kind == "conv":
            k2 = layer.kernel * layer.kernel
            params += shape_in[0] * layer.width * k2 + layer.width
            macs += _size(shape_out) * shape_in[0] * k2
        elif layer.kind == "dwconv":
            k2 = layer.kernel * layer.kernel
            cin, hw = shape_in[0], shape_out[1] * shape_out[2]
            params += cin * k2 + cin + cin * layer.width + layer.width
            macs += cin * hw * k2 + layer.width * hw * cin
        elif layer.kind == "fc":
            params += shape_in[0] * layer.width + layer.width
            macs += shape_in[0] * layer.width
    (features,), (classes,) = shapes[-1]
    params += features * classes + classes
    macs += features * classes
    sizes = node_tensors(candidate)
    peak = max(a + b for a, b in itertools.pairwise(sizes))
    return Cost(params=params, flops=2 * macs, peak_activation_bytes=peak * FLOAT_BYTES)


@dataclass(frozen=True)
class Limits:
    """Hardware limits checked before any training. None = no limit."""

    memory_mb: float | None = None  #: the user's memory_mb constraint
    flops: float | None = None  #: the user's FLOPs constraint
    params: int | None = None
    profile_memory_mb: float | None = None  #: the board's RAM, from its hw_targets profile
    profile: str | None = None  #: the profile's name, for the reason

    def violated(self, c: Cost) -> str | None:
        """The first limit the cost breaks, as a counter name (``pruned_<name>``), or None."""
        if self.profile_memory_mb is not None and c.memory_mb > self.profile_memory_mb:
            return "profile_memory"
        if self.memory_mb is not None and c.memory_mb > self.memory_mb:
            return "memory"
        if self.flops is not None and c.flops > self.flops:
            return "flops"
        if self.params is not None and c.params > self.params:
            return "params"
        return None

    def describe(self, reason: str, c: Cost) -> str:
        if reason == "profile_memory":
            return (
                f"needs {c.memory_mb:.2f} MB, the {self.profile} profile has "
                f"{self.profile_memory_mb:.0f} MB"
            )
        if reason == "memory":
            return f"needs {c.memory_mb:.2f} MB > memory_mb {self.memory_mb:g}"
        if reason == "flops":
            return f"{c.flops} FLOPs > flops {self.flops:g}"
        return f"{c.params} params > params {self.params}"


def check_buildable(candidate: Candidate, cap_mb: float = MAX_CANDIDATE_MB) -> Cost:
    """The candidate's cost, or SpaceError where building it would allocate past ``cap_mb``
    (values that fit one by one can still add up: two conv layers of 60,000 channels)."""
    c = cost(candidate)
    if c.memory_mb > cap_mb:
        raise SpaceError(
            f"{candidate} needs {c.memory_mb:,.0f} MB (weights + activations), over the "
            f"{cap_mb:,.0f} MB a candidate may need (search.space.MAX_CANDIDATE_MB): not built"
        )
    return c
