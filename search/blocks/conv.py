"""``conv``: a k x k convolution, BatchNorm, activation (``conv_k3_s1_c16_relu``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import (
    ACT,
    STRIDE,
    WIDTH,
    Block,
    BlockCost,
    BlockKind,
    IntGene,
    PruneGroup,
    Shape,
    SupernetSlot,
    Trace,
    elements,
    expect,
    same_conv_output_shape,
    trace_conv,
)

if TYPE_CHECKING:
    from torch import nn

    from .graph import GraphBuilder


class ConvKind(BlockKind):
    name = "conv"
    prefix = "conv"
    genes = (IntGene("kernel", "k", (1, 3, 5, 7)), STRIDE, WIDTH, ACT)
    summary = "k x k convolution -> BatchNorm -> activation"

    def output_shape(self, block: Block, shape: Shape) -> Shape:
        return same_conv_output_shape(self.name, block, shape)

    def cost(self, block: Block, shape: Shape) -> BlockCost:
        out = self.output_shape(block, shape)
        cin, window = shape[0], block["kernel"] ** (len(shape) - 1)
        trace = Trace(elements(shape))
        y = trace_conv(trace, trace.input, block["act"], elements(out))
        return BlockCost(
            params=out[0] * cin * window + out[0],
            macs=elements(out) * cin * window,
            live=trace.live(y),
        )

    def prune_groups(self, block: Block, shape: Shape) -> tuple[PruneGroup, ...]:
        return (PruneGroup("width", block["width"], ("conv", "bn"), gene="width", output=True),)

    def supernet(self, slot: SupernetSlot) -> nn.Module:
        from .supernet import SupernetConv

        return SupernetConv(slot)

    def module(self, block: Block, shape: Shape) -> nn.Module:
        from .layers import ConvBN

        return ConvBN(
            len(shape) - 1,
            shape[0],
            block["width"],
            block["kernel"],
            block["stride"],
            act=block["act"],
        )

    def emit(
        self, block: Block, module: nn.Module, graph: GraphBuilder, x: str, shape: Shape
    ) -> str:
        from .graph import emit_conv_bn
        from .layers import ConvBN

        return emit_conv_bn(graph, x, expect(module, ConvBN, self.name))


KIND = ConvKind()
