"""``dwconv``: depthwise k x k -BN-act, then pointwise 1x1 -BN-act (``dw_k3_s2_c32_relu6``)."""

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


class DepthwiseSeparableKind(BlockKind):
    name = "dwconv"
    prefix = "dw"
    genes = (IntGene("kernel", "k", (3, 5, 7)), STRIDE, WIDTH, ACT)
    summary = "depthwise k x k -> BN -> act, pointwise 1x1 -> BN -> act"

    def output_shape(self, block: Block, shape: Shape) -> Shape:
        return same_conv_output_shape(self.name, block, shape)

    def cost(self, block: Block, shape: Shape) -> BlockCost:
        out = self.output_shape(block, shape)
        cin, cout, area = shape[0], out[0], elements(out[1:])
        window = block["kernel"] ** (len(shape) - 1)
        trace = Trace(elements(shape))
        depthwise = trace_conv(trace, trace.input, block["act"], cin * area)
        y = trace_conv(trace, depthwise, block["act"], cout * area)
        return BlockCost(
            params=cin * window + cin + cout * cin + cout,
            macs=cin * area * window + cout * area * cin,
            live=trace.live(y),
        )

    def prune_groups(self, block: Block, shape: Shape) -> tuple[PruneGroup, ...]:
        return (
            PruneGroup("depthwise", shape[0], ("0.conv", "0.bn"), tied_to_input=True),
            PruneGroup("width", block["width"], ("1.conv", "1.bn"), gene="width", output=True),
        )

    def supernet(self, slot: SupernetSlot) -> nn.Module:
        from .supernet import SupernetDepthwise

        return SupernetDepthwise(slot)

    def module(self, block: Block, shape: Shape) -> nn.Module:
        from torch import nn

        from .layers import ConvBN

        dims, cin, act = len(shape) - 1, shape[0], block["act"]
        return nn.Sequential(
            ConvBN(dims, cin, cin, block["kernel"], block["stride"], groups=cin, act=act),
            ConvBN(dims, cin, block["width"], 1, act=act),
        )

    def emit(
        self, block: Block, module: nn.Module, graph: GraphBuilder, x: str, shape: Shape
    ) -> str:
        from torch import nn

        from .graph import emit_conv_bn

        depthwise, pointwise = expect(module, nn.Sequential, self.name)
        x = emit_conv_bn(graph, x, depthwise, "dw")
        return emit_conv_bn(graph, x, pointwise, "pw")


KIND = DepthwiseSeparableKind()
