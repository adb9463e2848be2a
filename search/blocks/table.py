"""The latency table's view of a chain of blocks: its ops, and each op as a one-block model.

:func:`chain_ops` lists what a per-layer table measures for a net (each block's
``table_ops``, then the classifier); :func:`candidate_table_ops` those of a whole block
candidate (the resize to its resolution first, where it has one); :func:`op_model` writes
one op as an ONNX model with the very nodes the block emits in the full net (BatchNorm
folded, random weights: latency does not depend on their values); :func:`op_cost` is an
op's analytic cost (the predictor's features). Torch and onnx are imported on first use of
:func:`op_model` only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import SpaceError
from .base import Block, Shape, TableOp, elements
from .candidate import BlockCandidate
from .chain import check_classes, classifier_cost, infer_shapes
from .registry import decode, kind_of
from .trace import BlockCost

CLASSIFIER = "classifier"
#: the nearest-neighbour resize of the data to a candidate's resolution (one Resize node)
RESIZE = "resize"
_CLASSIFIER_TOKEN = re.compile(r"cls_u([1-9][0-9]*)")
_RESIZE_TOKEN = re.compile(r"resize_r([1-9][0-9]*)")


def classifier_op(shape: Shape, num_classes: int) -> TableOp:
    """The net's last linear layer (with the flatten when ``shape`` is a feature map)."""
    return TableOp(CLASSIFIER, f"cls_u{check_classes(num_classes)}", tuple(shape))


def chain_ops(
    blocks: Sequence[Block], input_shape: Sequence[int], num_classes: int
) -> list[TableOp]:
    """Every block's table ops in order, then the classifier's; InvalidCandidate as
    :func:`infer_shapes` where the shapes do not work."""
    shapes = infer_shapes(blocks, input_shape)
    ops: list[TableOp] = []
    for block, (shape_in, _) in zip(blocks, shapes, strict=True):
        ops += kind_of(block).table_ops(block, shape_in)
    last = shapes[-1][1] if shapes else tuple(input_shape)
    ops.append(classifier_op(last, num_classes))
    return ops


def candidate_table_ops(candidate: BlockCandidate) -> list[TableOp]:
    """The ops of a block candidate's whole ONNX model: the resize to its resolution (on the
    data's own shape) where the resolution differs from the data's, then :func:`chain_ops`."""
    ops: list[TableOp] = []
    if candidate.net_shape != candidate.data_shape:
        ops.append(TableOp(RESIZE, f"resize_r{candidate.resolution}", candidate.data_shape))
    return ops + chain_ops(candidate.blocks, candidate.net_shape, candidate.num_classes)


def _units(op: TableOp, pattern: re.Pattern[str], form: str) -> int:
    match = pattern.fullmatch(op.token)
    if match is None:
        raise SpaceError(f"bad {op.kind} op '{op.token}': expected {form}")
    return int(match.group(1))


def _resized(op: TableOp) -> Shape:
    size = _units(op, _RESIZE_TOKEN, "resize_r<size>")
    return (op.in_shape[0], *([size] * (len(op.in_shape) - 1)))


def op_cost(op: TableOp) -> BlockCost:
    """The op's params, MACs and live elements per node, as the full net's cost counts them
    (the resize: one node holding its input and its output)."""
    shape = tuple(op.in_shape)
    if op.kind == CLASSIFIER:
        return classifier_cost(shape, _units(op, _CLASSIFIER_TOKEN, "cls_u<classes>"))
    if op.kind == RESIZE:
        return BlockCost(live=(elements(shape) + elements(_resized(op)),))
    block = decode(op.token)
    return kind_of(block).cost(block, shape)


def _resize_model(op: TableOp) -> bytes:
    import numpy as np

    from .graph import GraphBuilder

    graph = GraphBuilder(reserved=("input",))
    out_shape = _resized(op)
    sizes = graph.initializer(np.array([1, *out_shape], dtype=np.int64), "sizes")
    y = graph.node(  # as block_model writes it (candidate_net.py)
        "Resize",
        ["input", "", "", sizes],
        hint="resize",
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    model = graph.model(
        name=op.key(),
        inputs=[("input", [1, *op.in_shape])],
        outputs=[(y, [1, *out_shape])],
        doc=op.key(),
    )
    return bytes(model.SerializeToString())


def op_model(op: TableOp, *, seed: int = 0) -> bytes:
    """The one-op ONNX model of ``op``: input ``input`` ``[1, *in_shape]`` float32, one output
    (the block's last tensor), the nodes the block writes in the full net and no others."""
    import torch
    from torch import nn

    from .graph import GraphBuilder, emit_flatten, emit_linear

    shape = tuple(op.in_shape)
    if op.kind == RESIZE:
        return _resize_model(op)
    graph = GraphBuilder(reserved=("input",))
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        if op.kind == CLASSIFIER:
            units = _units(op, _CLASSIFIER_TOKEN, "cls_u<classes>")
            x = emit_flatten(graph, "input") if len(shape) > 1 else "input"
            y = emit_linear(graph, x, nn.Linear(elements(shape), units))
            out_shape: Shape = (units,)
        else:
            block = decode(op.token)
            kind = kind_of(block)
            if kind.name != op.kind:
                raise SpaceError(f"table op '{op.key()}' is a {kind.name}, not a {op.kind}")
            module = kind.module(block, shape).eval()
            y = kind.emit(block, module, graph, "input", shape)
            if y == "input":
                raise SpaceError(f"{op.token} writes no node: nothing for the table to measure")
            out_shape = kind.output_shape(block, shape)
    model = graph.model(
        name=op.key(),
        inputs=[("input", [1, *shape])],
        outputs=[(y, [1, *out_shape])],
        doc=op.key(),
    )
    return bytes(model.SerializeToString())
