"""A chain of blocks before a linear classifier: shapes and analytic cost. No torch."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InvalidCandidate, SpaceError
from .base import Block, BlockCost, Shape, Trace, elements
from .registry import decode, encode, kind_of


def check_input_shape(shape: Sequence[int]) -> Shape:
    """``(C, L)`` or ``(C, H, W)`` of positive integers, as a tuple; SpaceError otherwise."""
    values = tuple(shape) if isinstance(shape, (tuple, list)) else ()
    if len(values) not in (2, 3) or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values
    ):
        raise SpaceError(
            f"input_shape must be (C, L) or (C, H, W) of positive integers, got {shape!r}"
        )
    return values


def check_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise SpaceError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return num_classes


def as_blocks(blocks: Sequence[Block | str]) -> tuple[Block, ...]:
    """Blocks, decoding any token among them."""
    return tuple(b if isinstance(b, Block) else decode(b) for b in blocks)


def encode_blocks(blocks: Sequence[Block]) -> str:
    """The chain as its tokens joined by ``-`` (no token holds one)."""
    return "-".join(encode(b) for b in blocks)


def decode_blocks(text: str) -> tuple[Block, ...]:
    return tuple(decode(token) for token in text.split("-")) if text else ()


def infer_shapes(blocks: Sequence[Block], input_shape: Sequence[int]) -> list[tuple[Shape, Shape]]:
    """(input, output) shape of every block; InvalidCandidate naming the first block whose
    shapes do not work (its index in ``layer``)."""
    shape = check_input_shape(input_shape)
    out: list[tuple[Shape, Shape]] = []
    for i, block in enumerate(blocks):
        kind = kind_of(block)
        try:
            new = kind.output_shape(block, shape)
        except InvalidCandidate as exc:
            raise InvalidCandidate(f"block {i} ({kind.encode(block)}): {exc}", i) from exc
        out.append((shape, new))
        shape = new
    return out


def classifier_cost(shape: Shape, num_classes: int) -> BlockCost:
    """Flatten (when ``shape`` is a feature map) and the linear classifier."""
    features = elements(shape)
    trace = Trace(features)
    x = trace.node(trace.input, out=features) if len(shape) > 1 else trace.input
    y = trace.node(x, out=num_classes)
    return BlockCost(features * num_classes + num_classes, features * num_classes, trace.live(y))


def chain_cost(blocks: Sequence[Block], input_shape: Sequence[int], num_classes: int) -> BlockCost:
    """The net's cost: every block's, then the classifier's; ``live`` lists every node of
    the exported graph in order, so its peak is the graph's peak activation."""
    shapes = infer_shapes(blocks, input_shape)
    total = BlockCost()
    for block, (shape_in, _) in zip(blocks, shapes, strict=True):
        total = total + kind_of(block).cost(block, shape_in)
    last = shapes[-1][1] if shapes else check_input_shape(input_shape)
    return total + classifier_cost(last, check_classes(num_classes))
