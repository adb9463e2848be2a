"""What the block tests share: onnxruntime on one thread, BatchNorm statistics moved off
their initial values, and a kind from outside the package (``clamp``)."""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from search.blocks import Block, BlockCost, BlockKind, GraphBuilder, IntGene, Shape

M = TypeVar("M", bound=nn.Module)


def run_onnx(data: bytes, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(None, {"input": x})[0]
    return out


def with_moved_statistics(module: M) -> M:
    """Running statistics and affine parameters off their initial values; eval mode."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return module.eval()


class Clamp(nn.Module):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, -self.limit, self.limit)


class ClampKind(BlockKind):
    """``clamp_v2``: clip every value to [-v, v]. It says nothing about pruning or the table
    (the defaults hold)."""

    name = "clamp"
    prefix = "clamp"
    genes = (IntGene("limit", "v", range(1, 10)),)

    def output_shape(self, block: Block, shape: Shape) -> Shape:
        return shape

    def cost(self, block: Block, shape: Shape) -> BlockCost:
        return BlockCost(live=(2 * math.prod(shape),))

    def module(self, block: Block, shape: Shape) -> nn.Module:
        return Clamp(block["limit"])

    def emit(
        self, block: Block, module: nn.Module, graph: GraphBuilder, x: str, shape: Shape
    ) -> str:
        bounds = [graph.constant(-float(block["limit"])), graph.constant(float(block["limit"]))]
        return graph.node("Clip", [x, *bounds], hint="clamp")
