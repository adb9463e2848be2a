"""``mbconv``: MobileNetV2's inverted residual, optionally with MobileNetV3's squeeze-excite.

``mb_e6_k5_s2_c24_se_hswish``: 1x1 expand to ``e`` x the input channels -BN-act (none when
e = 1), depthwise k x k with the stride -BN-act, squeeze-excite when ``se`` (global mean ->
1x1 reduce to ``make_divisible(hidden // 4, 8)`` -> ReLU -> 1x1 expand -> HardSigmoid ->
scale, as MobileNetV3), 1x1 project -BN with no activation (the linear bottleneck). The
input is added back when the stride is 1 and the input and output widths match.
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
    FlagGene,
    IntGene,
    PruneGroup,
    Shape,
    SupernetSlot,
    Trace,
    elements,
    expect,
    make_divisible,
    same_conv_output_shape,
    trace_conv,
)

if TYPE_CHECKING:
    from torch import nn

    from .graph import GraphBuilder


def hidden_width(block: Block, cin: int) -> int:
    return cin * int(block["expansion"])


def squeeze_width(hidden: int) -> int:
    """MobileNetV3's squeeze channels: a quarter of the expanded width, a multiple of 8."""
    return make_divisible(hidden // 4, 8)


def has_residual(block: Block, shape: Shape) -> bool:
    return bool(block["stride"] == 1 and block["width"] == shape[0])


class InvertedResidualKind(BlockKind):
    name = "mbconv"
    prefix = "mb"
    genes = (
        IntGene("expansion", "e", (1, 3, 4, 6)),
        IntGene("kernel", "k", (3, 5, 7)),
        STRIDE,
        WIDTH,
        FlagGene("se", "se"),
        ACT,
    )
    summary = "inverted residual: 1x1 expand, depthwise k x k, [squeeze-excite], 1x1 project"

    def output_shape(self, block: Block, shape: Shape) -> Shape:
        return same_conv_output_shape(self.name, block, shape)

    def cost(self, block: Block, shape: Shape) -> BlockCost:
        out = self.output_shape(block, shape)
        cin, cout, act = shape[0], out[0], block["act"]
        hidden, window = hidden_width(block, cin), block["kernel"] ** (len(shape) - 1)
        area_in, area = elements(shape[1:]), elements(out[1:])
        trace = Trace(elements(shape))
        x, params, macs = trace.input, 0, 0
        if block["expansion"] != 1:
            x = trace_conv(trace, x, act, hidden * area_in)
            params += hidden * cin + hidden
            macs += hidden * area_in * cin
        x = trace_conv(trace, x, act, hidden * area)
        params += hidden * window + hidden
        macs += hidden * area * window
        if block["se"]:
            squeeze = squeeze_width(hidden)
            pooled = trace.node(x, out=hidden)
            reduced = trace.node(trace.node(pooled, out=squeeze), out=squeeze)  # conv, relu
            gate = trace.node(trace.node(reduced, out=hidden), out=hidden)  # conv, hsigmoid
            x = trace.node(x, gate, out=hidden * area)
            params += 2 * hidden * squeeze + squeeze + hidden
            macs += 2 * hidden * squeeze
        y = trace.node(x, out=cout * area)  # the project conv: no activation
        params += cout * hidden + cout
        macs += cout * area * hidden
        if has_residual(block, shape):
            y = trace.node(y, trace.input, out=cout * area)
        return BlockCost(params, macs, trace.live(y))

    def prune_groups(self, block: Block, shape: Shape) -> tuple[PruneGroup, ...]:
        """The hidden channels are ``e x input`` (the input's own when e = 1) and the
        squeeze ``make_divisible(hidden // 4)``: no gene says them once pruned, so they stay,
        and so does the input they come from. The output is tied to the input by the add."""
        at = "body." if has_residual(block, shape) else ""
        hidden = hidden_width(block, shape[0])
        parts = iter(range(4))
        modules: list[str] = []
        if block["expansion"] != 1:
            index = next(parts)
            modules += [f"{at}{index}.conv", f"{at}{index}.bn"]
        index = next(parts)
        modules += [f"{at}{index}.conv", f"{at}{index}.bn"]
        groups: list[PruneGroup] = []
        if block["se"]:
            index = next(parts)
            modules.append(f"{at}{index}.expand")
            squeeze = squeeze_width(hidden)
            groups.append(PruneGroup("squeeze", squeeze, (f"{at}{index}.reduce",), derived=True))
        expanded = block["expansion"] != 1
        groups.insert(
            0,
            PruneGroup(
                "hidden", hidden, tuple(modules), tied_to_input=not expanded, derived=expanded
            ),
        )
        index = next(parts)
        groups.append(
            PruneGroup(
                "width",
                block["width"],
                (f"{at}{index}.conv", f"{at}{index}.bn"),
                gene="width",
                tied_to_input=bool(at),
                output=True,
            )
        )
        return tuple(groups)

    def supernet(self, slot: SupernetSlot) -> nn.Module:
        from .supernet import SupernetInvertedResidual

        return SupernetInvertedResidual(slot)

    def module(self, block: Block, shape: Shape) -> nn.Module:
        from torch import nn

        from .layers import ConvBN, Residual, SqueezeExcite

        dims, cin, act = len(shape) - 1, shape[0], block["act"]
        hidden = hidden_width(block, cin)
        parts: list[nn.Module] = []
        if block["expansion"] != 1:
            parts.append(ConvBN(dims, cin, hidden, 1, act=act))
        kernel, stride = block["kernel"], block["stride"]
        parts.append(ConvBN(dims, hidden, hidden, kernel, stride, groups=hidden, act=act))
        if block["se"]:
            parts.append(SqueezeExcite(dims, hidden, squeeze_width(hidden)))
        parts.append(ConvBN(dims, hidden, block["width"], 1, act=None))
        body = nn.Sequential(*parts)
        return Residual(body, None, None) if has_residual(block, shape) else body

    def emit(
        self, block: Block, module: nn.Module, graph: GraphBuilder, x: str, shape: Shape
    ) -> str:
        from torch import nn

        from .graph import emit_conv_bn, emit_squeeze_excite
        from .layers import ConvBN, Residual, SqueezeExcite

        residual = has_residual(block, shape)
        outer = expect(module, Residual if residual else nn.Sequential, self.name)
        body = expect(outer.body if residual else outer, nn.Sequential, self.name)
        y = x
        for part in body:
            if isinstance(part, SqueezeExcite):
                y = emit_squeeze_excite(graph, y, part)
                continue
            conv = expect(part, ConvBN, self.name)
            # the depthwise conv is the only one wider than 1x1; the project has no activation
            hint = (
                "dw" if conv.conv.kernel_size[0] > 1 else "expand" if conv.act_name else "project"
            )
            y = emit_conv_bn(graph, y, conv, hint)
        if residual:
            y = graph.node("Add", [y, x], hint="add")
        return y


KIND = InvertedResidualKind()
