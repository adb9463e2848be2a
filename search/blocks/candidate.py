"""A searched block net as the loop sees a candidate: data shape, blocks, classes, encoding.

``BlockCandidate`` has the surface the search uses from ``search.space.Candidate``
(``encode``/``decode``, ``hash``, ``num_classes``, ``input_shape``, ``shapes``,
``is_valid``, ``str``), so the loop, the strategies and the run records take either. Its
encoding is self-contained, as the flat one is: the data's channels-last shape, the
resolution when the stage space chose one, the blocks' tokens, the classes:
``in32x32x3-r24-conv_k3_s2_c16_relu6-mb_e6_k3_s1_c16_relu6-gap-out10`` (1-D data:
``in128x3-...``). No flat layer token is a block token (a block's conv, dw, pool and fc
tokens end in their activation or pool mode), so the two encodings never collide.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from ..candidate import Candidate, register_encoding
from ..errors import SpaceError
from .base import Block, BlockCost, Shape, elements
from .chain import chain_cost, decode_blocks, encode_blocks, infer_shapes
from .registry import kind_of

_DATA = re.compile(r"in([1-9][0-9]*)x([1-9][0-9]*)(?:x([1-9][0-9]*))?")
_RESOLUTION = re.compile(r"r([1-9][0-9]*)")
_CLASSES = re.compile(r"out([1-9][0-9]*)")


@dataclass(frozen=True)
class BlockCandidate(Candidate):
    """Blocks before a linear classifier, for data of ``input_shape`` (channels-last,
    ``(H, W, C)`` or ``(L, C)``, as the search space takes it), resized to ``resolution``
    on every spatial axis when that is not None.

    A ``Candidate`` to the loop (so its types and records take it unchanged), with no flat
    ``layers``: what walks a candidate's layers (cost, build, export, the card) dispatches
    on this type and reads ``blocks``.
    """

    blocks: tuple[Block, ...] = ()
    resolution: int | None = None

    @classmethod
    def of(
        cls,
        data_shape: Sequence[int],
        blocks: Sequence[Block],
        num_classes: int,
        resolution: int | None = None,
    ) -> BlockCandidate:
        shape = cast("tuple[int, int, int]", blocks_input(data_shape))
        return cls(shape, (), num_classes, tuple(blocks), resolution)

    def encode(self) -> str:
        head = [f"in{'x'.join(str(d) for d in self.input_shape)}"]
        if self.resolution is not None:
            head.append(f"r{self.resolution}")
        body = [encode_blocks(self.blocks)] if self.blocks else []
        return "-".join([*head, *body, f"out{self.num_classes}"])

    @classmethod
    def decode(cls, text: str) -> BlockCandidate:
        parts = text.strip().split("-")
        data = _DATA.fullmatch(parts[0]) if parts else None
        classes = _CLASSES.fullmatch(parts[-1]) if len(parts) > 1 else None
        if not data or not classes:
            raise SpaceError(f"not a block candidate encoding: '{text}'")
        shape = tuple(int(g) for g in data.groups() if g is not None)
        body = parts[1:-1]
        resolution = None
        if body and (found := _RESOLUTION.fullmatch(body[0])):
            resolution, body = int(found.group(1)), body[1:]
        return cls.of(shape, decode_blocks("-".join(body)), int(classes.group(1)), resolution)

    @property
    def spatial_axes(self) -> int:
        """1 for (L, C) data, 2 for (H, W, C) images."""
        return len(self.input_shape) - 1

    @property
    def data_shape(self) -> Shape:
        """The data's own channels-first shape, ``(C, L)`` or ``(C, H, W)``: what the torch
        module and the ONNX model take (a resolution is resized to inside them)."""
        *spatial, channels = self.input_shape
        return (channels, *spatial)

    @property
    def net_shape(self) -> Shape:
        """The blocks' channels-first input shape: the data's, at the resolution."""
        channels, *spatial = self.data_shape
        if self.resolution is not None:
            spatial = [self.resolution] * len(spatial)
        return (channels, *spatial)

    def shapes(self) -> list[tuple[Shape, Shape]]:
        """(input, output) shape of every block, then of the classifier (flattened input);
        InvalidCandidate where a spatial size would drop below 1."""
        out = infer_shapes(self.blocks, self.net_shape)
        last = out[-1][1] if out else self.net_shape
        features = 1
        for d in last:
            features *= d
        return [*out, ((features,), (self.num_classes,))]

    def block_cost(self) -> BlockCost:
        """Params, MACs and the elements live at each ONNX node, the resize to the
        resolution first where there is one (InvalidCandidate like shapes())."""
        blocks = chain_cost(self.blocks, self.net_shape, self.num_classes)
        if self.net_shape == self.data_shape:
            return blocks
        resize = BlockCost(live=(elements(self.data_shape) + elements(self.net_shape),))
        return resize + blocks

    def architecture(self) -> list[str]:
        """``mbconv mb_e6_k3_s1_c16_relu6: 16x16x16 -> 16x16x16`` lines (channels first),
        then the classifier, for the model card."""
        shape = "x".join
        lines = []
        if self.resolution is not None:
            before = shape(map(str, self.data_shape))
            lines.append(f"resize (nearest): {before} -> {shape(map(str, self.net_shape))}")
        pairs = self.shapes()
        for block, (before_s, after_s) in zip(self.blocks, pairs, strict=False):
            token = kind_of(block).encode(block)
            lines.append(
                f"{block.kind} {token}: {shape(map(str, before_s))} -> {shape(map(str, after_s))}"
            )
        lines.append(f"classifier fc: {pairs[-1][0][0]} -> {self.num_classes} logits")
        return lines

    def input_layout(self) -> dict[str, Any]:
        """The model card's ``input``: the ONNX model takes the data's own size."""
        _channels, *spatial = self.data_shape
        held = "(L, C)" if len(spatial) == 1 else "(H, W, C)"
        order = "x.T[None]" if len(spatial) == 1 else "x.transpose(2, 0, 1)[None]"
        return {
            "name": "input",
            "shape": [1, *self.data_shape],
            "dtype": "float32",
            "layout": "NCL" if len(spatial) == 1 else "NCHW",
            "note": (
                f"channels first: a sample held channels-last as {held} = "
                f"{tuple(self.input_shape)} must be transposed, e.g. {order}, scaled as in "
                "training"
            ),
        }


def is_block_encoding(text: str) -> bool:
    """Whether ``text`` is a block candidate's encoding rather than a flat one's: any part
    between the head and the tail that no flat layer spells (a resolution, a block token),
    or a 1-D head."""
    parts = text.strip().split("-")
    if not parts or not _DATA.fullmatch(parts[0]):
        return False
    if parts[0].count("x") == 1:
        return True
    flat = re.compile(r"(conv|dw)_k\d+_s\d+_c\d+|pool_k\d+_s\d+|fc_u\d+")
    return any(not flat.fullmatch(p) for p in parts[1:-1])


def blocks_input(shape: Sequence[int]) -> tuple[int, ...]:
    """A channels-last data shape of positive integers, ``(H, W, C)`` or ``(L, C)``."""
    values = tuple(shape)
    if len(values) not in (2, 3) or any(
        isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in values
    ):
        raise SpaceError(
            f"input_shape must be (H, W, C) or (L, C) of positive ints with stages, got {shape!r}"
        )
    return tuple(int(v) for v in values)


# Candidate.decode (search.candidate) reads block encodings too once this module is loaded
register_encoding(is_block_encoding, BlockCandidate.decode)
