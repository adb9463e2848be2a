"""A chain of blocks as a torch module, and its ONNX bytes written by the blocks themselves."""

from __future__ import annotations

from collections.abc import Sequence

import onnx
import torch
from torch import nn

from ..candidate import FLOAT_BYTES, MAX_CANDIDATE_MB, MB
from ..errors import SpaceError
from .base import Block, Shape
from .chain import (
    as_blocks,
    chain_cost,
    check_classes,
    check_input_shape,
    encode_blocks,
    infer_shapes,
)
from .graph import GraphBuilder, emit_flatten, emit_linear
from .registry import kind_of

INPUT, OUTPUT = "input", "logits"


class BlockNet(nn.Module):
    """The blocks, then flatten and a linear classifier to ``num_classes`` logits.

    ``input_shape`` is channels-first without the batch: ``(C, L)`` or ``(C, H, W)``;
    ``forward`` takes N x C x L or N x C x H x W float32. Shapes are checked, and the memory
    the net needs against ``search.space.MAX_CANDIDATE_MB``, before anything is allocated.
    """

    def __init__(
        self,
        blocks: Sequence[Block | str],
        input_shape: Sequence[int],
        num_classes: int,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.block_list = as_blocks(blocks)
        self.input_shape = check_input_shape(input_shape)
        self.num_classes = check_classes(num_classes)
        self.shapes = infer_shapes(self.block_list, self.input_shape)  # InvalidCandidate first
        cost = chain_cost(self.block_list, self.input_shape, self.num_classes)
        mb = (cost.params * FLOAT_BYTES + cost.peak_activation_bytes) / MB
        if mb > MAX_CANDIDATE_MB:
            raise SpaceError(
                f"{encode_blocks(self.block_list)} needs {mb:,.0f} MB (weights + activations), "
                f"over the {MAX_CANDIDATE_MB:,.0f} MB a candidate may need: not built"
            )
        self.features_shape: Shape = self.shapes[-1][1] if self.shapes else self.input_shape
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.blocks = nn.ModuleList(
                kind_of(b).module(b, shape_in)
                for b, (shape_in, _) in zip(self.block_list, self.shapes, strict=True)
            )
            features = 1
            for d in self.features_shape:
                features *= d
            self.classifier = nn.Linear(features, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        out: torch.Tensor = self.classifier(torch.flatten(x, 1))
        return out

    def encode(self) -> str:
        return encode_blocks(self.block_list)


def to_model(net: BlockNet) -> onnx.ModelProto:
    """The net's graph with its current weights, BatchNorm folded (eval-mode statistics,
    whatever mode the module is in); input ``[1, C, *spatial]`` float32, output logits."""
    graph = GraphBuilder(reserved=(INPUT, OUTPUT))
    x = INPUT
    with torch.no_grad():
        for i, (block, module, (shape_in, _)) in enumerate(
            zip(net.block_list, net.blocks, net.shapes, strict=True)
        ):
            graph.scope = f"blocks.{i}"
            x = kind_of(block).emit(block, module, graph, x, shape_in)
        graph.scope = "classifier"
        if len(net.features_shape) > 1:
            x = emit_flatten(graph, x)
        emit_linear(graph, x, net.classifier, hint="linear", output=OUTPUT)
    shape = "x".join(str(d) for d in net.input_shape)
    return graph.model(
        name="blocknet",
        inputs=[(INPUT, [1, *net.input_shape])],
        outputs=[(OUTPUT, [1, net.num_classes])],
        doc=net.encode(),
        metadata={
            "hwnas.blocks": net.encode(),
            "hwnas.input_shape": shape,
            "hwnas.num_classes": str(net.num_classes),
        },
    )


def to_onnx(net: BlockNet) -> bytes:
    return bytes(to_model(net).SerializeToString())
