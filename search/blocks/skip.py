"""``skip``: the identity. No node in the graph, no cost; it lets a stage be shallower."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Block, BlockCost, BlockKind, PruneGroup, Shape, TableOp

if TYPE_CHECKING:
    from torch import nn

    from .graph import GraphBuilder


class SkipKind(BlockKind):
    name = "skip"
    prefix = "skip"
    summary = "identity (no node)"

    def output_shape(self, block: Block, shape: Shape) -> Shape:
        return shape

    def cost(self, block: Block, shape: Shape) -> BlockCost:
        return BlockCost()

    def table_ops(self, block: Block, shape: Shape) -> tuple[TableOp, ...]:
        return ()  # no node: nothing to measure

    def prune_groups(self, block: Block, shape: Shape) -> tuple[PruneGroup, ...]:
        """Channel by channel: its output channels are its input's."""
        return (PruneGroup("channels", shape[0], tied_to_input=True, output=True),)

    def module(self, block: Block, shape: Shape) -> nn.Module:
        from torch import nn

        return nn.Identity()

    def emit(
        self, block: Block, module: nn.Module, graph: GraphBuilder, x: str, shape: Shape
    ) -> str:
        return x


KIND = SkipKind()
