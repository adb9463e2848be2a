"""Candidate -> torch module (for training). NCHW inside; data.py converts channels-last.

Nothing is built whose analytic memory is over ``space.MAX_CANDIDATE_MB`` (SpaceError)."""

from __future__ import annotations

import torch
from torch import nn

from .cost import check_buildable
from .space import Candidate
from .training.net import CandidateNet as CandidateNet  # re-exported: the base of every net


def layer_modules(candidate: Candidate) -> list[nn.Module]:
    """The candidate as a flat list of modules, in order (onnx_export.py walks the same list)."""
    shapes = candidate.shapes()  # raises InvalidCandidate before anything is allocated
    check_buildable(candidate)  # SpaceError where torch would allocate past the cap
    channels = candidate.input_shape[2]
    modules: list[nn.Module] = []
    flat = False
    for (shape_in, _), layer in zip(shapes, candidate.layers, strict=False):
        if layer.kind == "conv":
            modules += [
                nn.Conv2d(channels, layer.width, layer.kernel, layer.stride, layer.kernel // 2),
                nn.ReLU(),
            ]
            channels = layer.width
        elif layer.kind == "dwconv":
            modules += [
                nn.Conv2d(
                    channels,
                    channels,
                    layer.kernel,
                    layer.stride,
                    layer.kernel // 2,
                    groups=channels,
                ),
                nn.ReLU(),
                nn.Conv2d(channels, layer.width, 1),
                nn.ReLU(),
            ]
            channels = layer.width
        elif layer.kind == "pool":
            modules.append(nn.MaxPool2d(layer.kernel, layer.stride))
        elif layer.kind == "fc":
            if not flat:
                modules.append(nn.Flatten())
                flat = True
            modules += [nn.Linear(shape_in[0], layer.width), nn.ReLU()]
    features = shapes[-1][0][0]
    if not flat:
        modules.append(nn.Flatten())
    modules.append(nn.Linear(features, candidate.num_classes))
    return modules


class FlatNet(CandidateNet):
    """A flat candidate's net: its layers in one ``body``; ``forward`` takes NCHW float32
    and returns logits."""

    def __init__(self, candidate: Candidate) -> None:
        super().__init__()
        self.candidate = candidate
        self.body = nn.Sequential(*layer_modules(candidate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return out


def build(candidate: Candidate, *, seed: int = 0) -> CandidateNet:
    """A freshly initialised module; the same seed gives the same weights. A block
    candidate (``search.blocks.BlockCandidate``) gives its ``BlockCandidateNet``."""
    from .blocks.candidate import BlockCandidate

    if isinstance(candidate, BlockCandidate):
        from .blocks.candidate_net import BlockCandidateNet

        return BlockCandidateNet(candidate, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FlatNet(candidate)
