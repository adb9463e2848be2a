"""``pool``: max or average pooling, no padding (``pool_max_k2_s2``, ``pool_avg_k3_s1``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import (
    Block,
    BlockCost,
    BlockKind,
    IntGene,
    PruneGroup,
    Shape,
    WordGene,
    elements,
    window_output_shape,
)

if TYPE_CHECKING:
    from torch import nn

    from .graph import GraphBuilder

WINDOWS = range(1, 65)


class PoolKind(BlockKind):
    name = "pool"
    prefix = "pool"
    genes = (
        WordGene("mode", ("max", "avg")),
        IntGene("kernel", "k", WINDOWS),
        IntGene("stride", "s", WINDOWS),
    )
    summary = "max or average pooling over a k window, no padding"

    def output_shape(self, block: Block, shape: Shape) -> Shape:
        return window_output_shape(self.name, shape, shape[0], block["kernel"], block["stride"], 0)

    def cost(self, block: Block, shape: Shape) -> BlockCost:
        out = self.output_shape(block, shape)
        return BlockCost(live=(elements(shape) + elements(out),))

    def prune_groups(self, block: Block, shape: Shape) -> tuple[PruneGroup, ...]:
        """Channel by channel: its output channels are its input's."""
        return (PruneGroup("channels", shape[0], tied_to_input=True, output=True),)

    def module(self, block: Block, shape: Shape) -> nn.Module:
        from torch import nn

        kernel, stride = block["kernel"], block["stride"]
        if block["mode"] == "max":
            return nn.MaxPool1d(kernel, stride) if len(shape) == 2 else nn.MaxPool2d(kernel, stride)
        return nn.AvgPool1d(kernel, stride) if len(shape) == 2 else nn.AvgPool2d(kernel, stride)

    def emit(
        self, block: Block, module: nn.Module, graph: GraphBuilder, x: str, shape: Shape
    ) -> str:
        dims = len(shape) - 1
        op = "MaxPool" if block["mode"] == "max" else "AveragePool"
        return graph.node(
            op,
            [x],
            hint=block["mode"] + "pool",
            kernel_shape=[block["kernel"]] * dims,
            strides=[block["stride"]] * dims,
        )


KIND = PoolKind()
