"""``skip``: the identity. No node in the graph, no cost; it lets a stage be shallower."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Block, BlockCost, BlockKind, Shape

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

    def module(self, block: Block, shape: Shape) -> nn.Module:
        from torch import nn

        return nn.Identity()

    def emit(
        self, block: Block, module: nn.Module, graph: GraphBuilder, x: str, shape: Shape
    ) -> str:
        return x


KIND = SkipKind()
