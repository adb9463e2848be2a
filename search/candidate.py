"""A candidate architecture of the flat space and its canonical text encoding.

A candidate is a short readable string, timm-style:
``in8x8x1-conv_k3_s1_c16-pool_k2_s2-fc_u64-out10``. The encoding is canonical (one
architecture, one string), so its sha256 is a stable id across processes and runs.

This module sits below both the space (``search.space``) and the block kinds
(``search.blocks``): a block candidate is a :class:`Candidate` too, and registers its own
encoding here (:func:`register_encoding`), so ``Candidate.decode`` reads both without this
module importing the blocks.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import InvalidCandidate, SpaceError

#: Layer types: ``conv`` (conv + ReLU), ``dwconv`` (depthwise-separable: depthwise kxk +
#: pointwise 1x1, each + ReLU), ``pool`` (max pool), ``fc`` (linear + ReLU), ``skip``
#: (identity: lets the depth shrink below ``num_layers``).
LAYER_TYPES = ("conv", "dwconv", "pool", "fc", "skip")
FEATURE_TYPES = ("conv", "dwconv", "pool")
_TAGS = {"conv": "conv", "dwconv": "dw", "pool": "pool", "fc": "fc"}
_KINDS = {tag: kind for kind, tag in _TAGS.items()}

Shape = tuple[int, ...]  #: (C, H, W) for feature maps, (F,) after the flatten


@dataclass(frozen=True)
class Layer:
    kind: str  #: one of LAYER_TYPES except "skip"
    kernel: int = 0  #: conv/dwconv kernel, pool window
    stride: int = 0
    width: int = 0  #: output channels (conv, dwconv) or units (fc)

    def encode(self) -> str:
        tag = _TAGS[self.kind]
        if self.kind == "fc":
            return f"fc_u{self.width}"
        if self.kind == "pool":
            return f"pool_k{self.kernel}_s{self.stride}"
        return f"{tag}_k{self.kernel}_s{self.stride}_c{self.width}"

    @classmethod
    def decode(cls, text: str) -> Layer:
        tag, *args = text.split("_")
        if tag not in _KINDS:
            raise SpaceError(f"unknown layer '{text}'")
        values: dict[str, int] = {}
        for arg in args:
            match = re.fullmatch(r"([kscu])(\d+)", arg)
            if not match:
                raise SpaceError(f"bad layer argument '{arg}' in '{text}'")
            values[match[1]] = int(match[2])
        kind = _KINDS[tag]
        return cls(
            kind,
            kernel=values.get("k", 0),
            stride=values.get("s", 0),
            width=values.get("c", values.get("u", 0)),
        )


def conv_out(size: int, kernel: int, stride: int) -> int:
    """'Same'-style padding (kernel // 2), as build.py and onnx_export.py use."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def pool_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1 if size >= kernel else 0


@dataclass(frozen=True)
class Candidate:
    """An architecture: channels-last input shape, layers, and the number of classes."""

    input_shape: tuple[int, int, int]  #: (H, W, C)
    layers: tuple[Layer, ...]
    num_classes: int

    def encode(self) -> str:
        h, w, c = self.input_shape
        body = [layer.encode() for layer in self.layers]
        return "-".join([f"in{h}x{w}x{c}", *body, f"out{self.num_classes}"])

    @classmethod
    def decode(cls, text: str) -> Candidate:
        """The candidate ``text`` names: a flat one, or one of a registered encoding (a
        ``search.blocks.BlockCandidate``: the two never collide)."""
        for matches, decode in _OTHER_ENCODINGS:
            if matches(text):
                return decode(text)
        parts = text.strip().split("-")
        head = re.fullmatch(r"in(\d+)x(\d+)x(\d+)", parts[0]) if parts else None
        tail = re.fullmatch(r"out(\d+)", parts[-1]) if len(parts) > 1 else None
        if not head or not tail:
            raise SpaceError(f"not a candidate encoding: '{text}'")
        h, w, c = (int(g) for g in head.groups())
        layers = tuple(Layer.decode(p) for p in parts[1:-1])
        return cls((h, w, c), layers, int(tail[1]))

    @property
    def hash(self) -> str:
        """Stable id: the first 12 hex digits of the encoding's sha256."""
        return hashlib.sha256(self.encode().encode()).hexdigest()[:12]

    def __str__(self) -> str:
        return self.encode()

    def shapes(self) -> list[tuple[Shape, Shape]]:
        """(input, output) shape of every layer, then of the classifier; batch excluded.

        Raises InvalidCandidate where a spatial size would drop below 1.
        """
        h, w, c = self.input_shape
        shape: Shape = (c, h, w)
        out: list[tuple[Shape, Shape]] = []
        for i, layer in enumerate(self.layers):
            if layer.kind == "fc":
                features = shape[0] * shape[1] * shape[2] if len(shape) == 3 else shape[0]
                new: Shape = (layer.width,)
                out.append(((features,), new))
            else:
                if len(shape) != 3:
                    raise InvalidCandidate(f"layer {i} ({layer.encode()}) after a flatten", i)
                size = conv_out if layer.kind != "pool" else pool_out
                nh = size(shape[1], layer.kernel, layer.stride)
                nw = size(shape[2], layer.kernel, layer.stride)
                if nh < 1 or nw < 1:
                    raise InvalidCandidate(
                        f"layer {i} ({layer.encode()}) makes the spatial size "
                        f"{shape[1]}x{shape[2]} drop below 1",
                        i,
                    )
                channels = shape[0] if layer.kind == "pool" else layer.width
                new = (channels, nh, nw)
                out.append((shape, new))
            shape = new
        features = shape[0] * shape[1] * shape[2] if len(shape) == 3 else shape[0]
        out.append(((features,), (self.num_classes,)))
        return out

    def is_valid(self) -> bool:
        try:
            self.shapes()
        except InvalidCandidate:
            return False
        return True


#: (does this text use the encoding?, its decoder), for encodings other than the flat one
_OTHER_ENCODINGS: list[tuple[Callable[[str], bool], Callable[[str], Candidate]]] = []


def register_encoding(matches: Callable[[str], bool], decode: Callable[[str], Candidate]) -> None:
    """Let ``Candidate.decode`` read another candidate encoding (``search.blocks`` registers
    the block candidates' when it is imported; ``search.space`` imports it)."""
    if (matches, decode) not in _OTHER_ENCODINGS:
        _OTHER_ENCODINGS.append((matches, decode))


FLOAT_BYTES = 4
MB = 1024 * 1024

#: The most one candidate may need (weights + peak activations, float32, batch 1) for the
#: search to build it. A space holding a value that alone needs more (``conv_channels =
#: [1000000000]``, ``num_classes = 10**9``) is refused when the space is made, and a candidate
#: over it is never built: torch would try to allocate tens of GB before any budget is
#: checked. 4 GiB of float32 is a billion weights, far past what a board here runs.
MAX_CANDIDATE_MB = 4096.0
