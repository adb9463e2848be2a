"""``res``: a basic residual block, as the ResNet-8 of MLPerf Tiny's image task.

``res_s2_c32_relu``: 3x3 conv with the stride -BN-act, 3x3 conv -BN, plus the input (the
identity) or, when the stride is not 1 or the widths differ, a 1x1 conv -BN projection of
it with the same stride; then the activation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import (
    ACT,
    STRIDE,
    WIDTH,
    Block,
    BlockCost,
    BlockKind,
    PruneGroup,
    Shape,
    Trace,
    elements,
    expect,
    trace_activation,
    trace_conv,
    window_output_shape,
)

if TYPE_CHECKING:
    from torch import nn

    from .graph import GraphBuilder

KERNEL = 3


def needs_projection(block: Block, shape: Shape) -> bool:
    return bool(block["stride"] != 1 or block["width"] != shape[0])


class ResidualKind(BlockKind):
    name = "res"
    prefix = "res"
    genes = (STRIDE, WIDTH, ACT)
    summary = (
        "basic residual block: 3x3 conv-BN-act, 3x3 conv-BN, + identity or 1x1 projection, act"
    )

    def output_shape(self, block: Block, shape: Shape) -> Shape:
        return window_output_shape(self.name, shape, block["width"], KERNEL, block["stride"], 1)

    def cost(self, block: Block, shape: Shape) -> BlockCost:
        out = self.output_shape(block, shape)
        cin, cout, n, act = shape[0], out[0], elements(out), block["act"]
        window = KERNEL ** (len(shape) - 1)
        trace = Trace(elements(shape))
        first = trace_conv(trace, trace.input, act, n)
        second = trace.node(first, out=n)
        params = cout * cin * window + cout + cout * cout * window + cout
        macs = n * cin * window + n * cout * window
        shortcut = trace.input
        if needs_projection(block, shape):
            shortcut = trace.node(trace.input, out=n)
            params += cout * cin + cout
            macs += n * cin
        y = trace_activation(trace, trace.node(second, shortcut, out=n), act, n)
        return BlockCost(params, macs, trace.live(y))

    def prune_groups(self, block: Block, shape: Shape) -> tuple[PruneGroup, ...]:
        """Both convs have the one width gene: the two groups must keep equal widths. The
        output is the input's channels when the shortcut is the identity."""
        projection = needs_projection(block, shape)
        out = ("body.1.conv", "body.1.bn") + (
            ("shortcut.conv", "shortcut.bn") if projection else ()
        )
        width = block["width"]
        return (
            PruneGroup("mid", width, ("body.0.conv", "body.0.bn"), gene="width"),
            PruneGroup(
                "width", width, out, gene="width", tied_to_input=not projection, output=True
            ),
        )

    def module(self, block: Block, shape: Shape) -> nn.Module:
        from torch import nn

        from .layers import ConvBN, Residual

        dims, cin, cout, stride, act = (
            len(shape) - 1,
            shape[0],
            block["width"],
            block["stride"],
            block["act"],
        )
        body = nn.Sequential(
            ConvBN(dims, cin, cout, KERNEL, stride, act=act),
            ConvBN(dims, cout, cout, KERNEL, act=None),
        )
        projection = ConvBN(dims, cin, cout, 1, stride) if needs_projection(block, shape) else None
        return Residual(body, projection, act)

    def emit(
        self, block: Block, module: nn.Module, graph: GraphBuilder, x: str, shape: Shape
    ) -> str:
        from .graph import emit_activation, emit_conv_bn
        from .layers import ConvBN, Residual

        residual = expect(module, Residual, self.name)
        first, second = residual.body
        y = emit_conv_bn(graph, emit_conv_bn(graph, x, first, "conv1"), second, "conv2")
        shortcut = x
        if residual.shortcut is not None:
            shortcut = emit_conv_bn(graph, x, expect(residual.shortcut, ConvBN, self.name), "proj")
        return emit_activation(
            graph, graph.node("Add", [y, shortcut], hint="add"), residual.act_name
        )


KIND = ResidualKind()
