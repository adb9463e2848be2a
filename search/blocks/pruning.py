"""Structured pruning across a chain of blocks: which channels go together, which stay.

Each block's :meth:`BlockKind.prune_groups` says its own groups; :func:`net_groups` joins
them along the chain: a group tied to its block's input (an identity residual add, a
depthwise conv, a pooling) joins the previous block's output group, so a residual stage's
widths are pruned as one. A group is prunable when a gene says its width after pruning,
nothing derives a width from it, and no group that stays holds the same gene (the encoding
has one width per gene); the data's channels and the classifier's outputs stay.
:func:`frozen_modules` is that answer as Torch-Pruning's ``ignored_layers`` (its dependency
graph then cuts only whole prunable groups), :func:`pruned_blocks` reads the blocks back
from the pruned net so the encoding and the ONNX export stay true to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import SearchError
from .base import Block
from .chain import check_input_shape, encode_blocks, infer_shapes
from .registry import encode, kind_of

if TYPE_CHECKING:
    from torch import nn

    from .net import BlockNet


@dataclass(frozen=True)
class NetGroup:
    """One set of channels of the net, pruned together or not at all. ``modules`` are
    paths in ``BlockNet`` (``blocks.3.body.0.conv``) whose output channels these are;
    ``genes`` the (block index, gene) each pruned width is written back to (equal widths
    where one block's gene appears in two groups: ``res``); ``reason`` says why not when
    ``prunable`` is false."""

    width: int
    modules: tuple[str, ...]
    genes: tuple[tuple[int, str], ...]
    prunable: bool
    reason: str = ""


@dataclass
class _Open:
    width: int
    modules: list[str] = field(default_factory=list)
    genes: list[tuple[int, str]] = field(default_factory=list)
    reason: str = ""

    def freeze(self, why: str) -> None:
        self.reason = self.reason or why

    def close(self) -> NetGroup:
        reason = self.reason or ("" if self.genes else "no gene says its width")
        return NetGroup(self.width, tuple(self.modules), tuple(self.genes), not reason, reason)


def _path(index: int, module: str) -> str:
    return f"blocks.{index}" + (f".{module}" if module else "")


def net_groups(blocks: Sequence[Block], input_shape: Sequence[int]) -> list[NetGroup]:
    """The net's channel groups, the data's channels first; InvalidCandidate as
    :func:`infer_shapes` where the shapes do not work."""
    shapes = infer_shapes(blocks, input_shape)
    current = _Open(check_input_shape(input_shape)[0], reason="the data's channels")
    groups = [current]
    for i, (block, (shape_in, _)) in enumerate(zip(blocks, shapes, strict=True)):
        output = current
        for group in kind_of(block).prune_groups(block, shape_in):
            target = current if group.tied_to_input else _Open(group.width)
            if target is not current:
                groups.append(target)
            target.modules += [_path(i, m) for m in group.modules]
            if group.gene is not None:
                target.genes.append((i, group.gene))
            if group.derived:
                why = f"block {i} ({encode(block)}) derives its {group.name} width from it"
                target.freeze(f"block {i} ({encode(block)}): no gene says its {group.name} width")
                current.freeze(why)
            elif group.gene is None and not group.tied_to_input:
                target.freeze(f"block {i} ({encode(block)}): no gene says its {group.name} width")
            if group.output:
                output = target
        current = output
    _freeze_shared_genes(groups)
    return [g.close() for g in groups]


def _freeze_shared_genes(groups: list[_Open]) -> None:
    """A gene one frozen group holds freezes every group that holds it: the encoding has
    one width for it (``res``'s middle cannot be cut while its output stays)."""
    changed = True
    while changed:
        changed = False
        frozen = {gene for g in groups if g.reason for gene in g.genes}
        for group in groups:
            shared = next((gene for gene in group.genes if gene in frozen), None)
            if shared is not None and not group.reason:
                block, gene = shared
                group.freeze(f"block {block}'s gene '{gene}' also says a width that stays")
                changed = True


def prunable_groups(blocks: Sequence[Block], input_shape: Sequence[int]) -> list[NetGroup]:
    """The groups pruning may cut (InvalidCandidate as :func:`net_groups`)."""
    return [g for g in net_groups(blocks, input_shape) if g.prunable]


def left_after(width: int, ratio: float) -> int:
    """The channels Torch-Pruning leaves of ``width`` at ``ratio`` (its own rounding:
    ``int(width * (1 - ratio))``)."""
    return int(width * (1 - ratio))


def check_ratio_leaves_channels(
    blocks: Sequence[Block], input_shape: Sequence[int], ratio: float
) -> list[NetGroup]:
    """The prunable groups; SearchError naming the first one ``ratio`` would leave with no
    channel, or saying why each group stays when none is prunable."""
    groups = net_groups(blocks, input_shape)
    prunable = [g for g in groups if g.prunable]
    if not prunable:
        reasons = sorted({g.reason for g in groups})
        raise SearchError(
            f"{encode_blocks(blocks)}: no channel group to prune ({'; '.join(reasons)})"
        )
    for group in prunable:
        if left_after(group.width, ratio) < 1:
            block, gene = group.genes[0]
            raise SearchError(
                f"pruning ratio {ratio:g} would leave no channel of the {group.width} of "
                f"block {block} ({encode(blocks[block])}) '{gene}': use a ratio of at most "
                f"{math.floor((1 - 1 / group.width) * 1000) / 1000:g}"
            )
    return prunable


def frozen_modules(net: BlockNet) -> list[nn.Module]:
    """The modules Torch-Pruning must not prune (``ignored_layers``): those of every group
    that is not prunable (a whole block where the group names it), and the classifier."""
    out: list[nn.Module] = []
    seen: set[int] = set()
    for group in net_groups(net.block_list, net.input_shape):
        if group.prunable:
            continue
        for path in group.modules:
            for module in net.get_submodule(path).modules():
                if id(module) not in seen:
                    seen.add(id(module))
                    out.append(module)
    out.append(net.classifier)
    return out


def pruned_blocks(net: BlockNet | Any) -> tuple[Block, ...]:
    """The blocks the pruned ``net`` now is (its structure, and ``shapes``, unchanged;
    its widths read from the modules); SearchError where a block's gene came out two ways."""
    return tuple(
        kind_of(block).pruned(block, module, shape_in)
        for block, module, (shape_in, _) in zip(net.block_list, net.blocks, net.shapes, strict=True)
    )
