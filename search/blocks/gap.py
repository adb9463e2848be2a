"""``gap``: global average pooling to (C, 1) or (C, 1, 1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Block, BlockCost, BlockKind, PruneGroup, Shape, elements, feature_map

if TYPE_CHECKING:
    from torch import nn

    from .graph import GraphBuilder


class GlobalAvgPoolKind(BlockKind):
    name = "gap"
    prefix = "gap"
    summary = "global average pooling over every spatial axis"

    def output_shape(self, block: Block, shape: Shape) -> Shape:
        channels, spatial = feature_map(self.name, shape)
        return (channels, *(1 for _ in spatial))

    def cost(self, block: Block, shape: Shape) -> BlockCost:
        return BlockCost(live=(elements(shape) + shape[0],))

    def prune_groups(self, block: Block, shape: Shape) -> tuple[PruneGroup, ...]:
        """Channel by channel: its output channels are its input's."""
        return (PruneGroup("channels", shape[0], tied_to_input=True, output=True),)

    def module(self, block: Block, shape: Shape) -> nn.Module:
        from .layers import GlobalAvgPool

        return GlobalAvgPool()

    def emit(
        self, block: Block, module: nn.Module, graph: GraphBuilder, x: str, shape: Shape
    ) -> str:
        return graph.node("GlobalAveragePool", [x], hint="gap")


KIND = GlobalAvgPoolKind()
