"""``fc``: flatten (when given a feature map), linear, activation (``fc_u64_relu``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import (
    ACT,
    MAX_WIDTH,
    Block,
    BlockCost,
    BlockKind,
    IntGene,
    PruneGroup,
    Shape,
    Trace,
    elements,
    expect,
    trace_activation,
)

if TYPE_CHECKING:
    from torch import nn

    from .graph import GraphBuilder


class DenseKind(BlockKind):
    name = "fc"
    prefix = "fc"
    genes = (IntGene("units", "u", range(1, MAX_WIDTH + 1)), ACT)
    summary = "flatten if needed, linear, activation"

    def output_shape(self, block: Block, shape: Shape) -> Shape:
        return (block["units"],)

    def cost(self, block: Block, shape: Shape) -> BlockCost:
        features, units = elements(shape), block["units"]
        trace = Trace(features)
        x = trace.node(trace.input, out=features) if len(shape) > 1 else trace.input
        y = trace_activation(trace, trace.node(x, out=units), block["act"], units)
        return BlockCost(features * units + units, features * units, trace.live(y))

    def prune_groups(self, block: Block, shape: Shape) -> tuple[PruneGroup, ...]:
        return (PruneGroup("units", block["units"], ("linear",), gene="units", output=True),)

    def module(self, block: Block, shape: Shape) -> nn.Module:
        from .layers import Dense

        return Dense(elements(shape), block["units"], flatten=len(shape) > 1, act=block["act"])

    def emit(
        self, block: Block, module: nn.Module, graph: GraphBuilder, x: str, shape: Shape
    ) -> str:
        from .graph import emit_dense
        from .layers import Dense

        return emit_dense(graph, x, expect(module, Dense, self.name))


KIND = DenseKind()
