"""``pointwise``: a strided 1x1 convolution, BatchNorm, activation. It has ``stride`` and
``width`` genes, so a stage of the stage space may be made of it."""

from __future__ import annotations

from torch import nn

from search.blocks import Block, BlockCost, BlockKind, GraphBuilder, PruneGroup, Shape, Trace
from search.blocks.base import ACT, STRIDE, WIDTH, elements, window_output_shape
from search.blocks.graph import emit_conv_bn
from search.blocks.layers import ConvBN
from search.blocks.trace import trace_conv


class PointwiseKind(BlockKind):
    name = "pointwise"
    prefix = "pw"
    genes = (STRIDE, WIDTH, ACT)
    summary = "strided 1x1 convolution -> BatchNorm -> activation"

    def output_shape(self, block: Block, shape: Shape) -> Shape:
        return window_output_shape(self.name, shape, block["width"], 1, block["stride"], 0)

    def cost(self, block: Block, shape: Shape) -> BlockCost:
        out = self.output_shape(block, shape)
        trace = Trace(elements(shape))
        y = trace_conv(trace, trace.input, block["act"], elements(out))
        cin = shape[0]
        return BlockCost(out[0] * cin + out[0], elements(out) * cin, trace.live(y))

    def prune_groups(self, block: Block, shape: Shape) -> tuple[PruneGroup, ...]:
        return (PruneGroup("width", block["width"], ("conv", "bn"), gene="width", output=True),)

    def module(self, block: Block, shape: Shape) -> nn.Module:
        dims = len(shape) - 1
        return ConvBN(dims, shape[0], block["width"], 1, block["stride"], act=block["act"])

    def emit(
        self, block: Block, module: nn.Module, graph: GraphBuilder, x: str, shape: Shape
    ) -> str:
        assert isinstance(module, ConvBN)
        return emit_conv_bn(graph, x, module, hint="pw")
