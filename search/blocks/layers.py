"""The torch parts the block kinds are built from, for 1 or 2 spatial dimensions.

Every conv that BatchNorm follows has no bias of its own (BN's shift takes its place, and
the export folds both into one biased conv). ``dims`` is the number of spatial axes.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import SpaceError

Conv = nn.Conv1d | nn.Conv2d
BatchNorm = nn.BatchNorm1d | nn.BatchNorm2d


def _dims(dims: int) -> int:
    if dims not in (1, 2):
        raise SpaceError(f"blocks work on 1 or 2 spatial dimensions, not {dims}")
    return dims


def conv(
    dims: int,
    cin: int,
    cout: int,
    kernel: int,
    stride: int = 1,
    *,
    groups: int = 1,
    bias: bool = True,
) -> Conv:
    """A conv with 'same'-style padding (``kernel // 2``), as the shapes assume."""
    cls = nn.Conv1d if _dims(dims) == 1 else nn.Conv2d
    return cls(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=bias)


def batch_norm(dims: int, channels: int) -> BatchNorm:
    return nn.BatchNorm1d(channels) if _dims(dims) == 1 else nn.BatchNorm2d(channels)


def activation(name: str | None) -> nn.Module:
    """relu, relu6, hswish, or None for no activation (an identity)."""
    if name is None:
        return nn.Identity()
    table: dict[str, type[nn.Module]] = {
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "hswish": nn.Hardswish,
    }
    if name not in table:
        raise SpaceError(f"unknown activation '{name}' (known: {', '.join(table)})")
    return table[name]()


class ConvBN(nn.Module):
    """conv (no bias) -> BatchNorm -> activation (``act_name`` None: none)."""

    def __init__(
        self,
        dims: int,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        *,
        groups: int = 1,
        act: str | None = None,
    ) -> None:
        super().__init__()
        self.conv = conv(dims, cin, cout, kernel, stride, groups=groups, bias=False)
        self.bn = batch_norm(dims, cout)
        self.act_name = act
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.bn(self.conv(x)))
        return out


def global_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over every spatial axis, kept as size-1 axes: (N, C, 1[, 1])."""
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_mean(x)


class SqueezeExcite(nn.Module):
    """MobileNetV3's: global mean -> 1x1 reduce (bias) -> ReLU -> 1x1 expand (bias) ->
    hard sigmoid -> scale the input channel by channel."""

    def __init__(self, dims: int, channels: int, squeeze: int) -> None:
        super().__init__()
        self.reduce = conv(dims, channels, squeeze, 1)
        self.relu = nn.ReLU()
        self.expand = conv(dims, squeeze, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.expand(self.relu(self.reduce(global_mean(x)))))
        out: torch.Tensor = x * scale
        return out


class Residual(nn.Module):
    """``act(body(x) + shortcut(x))``; ``shortcut`` None is the identity."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None, act: str | None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut
        self.act_name = act
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        out: torch.Tensor = self.act(self.body(x) + skip)
        return out


class Dense(nn.Module):
    """Flatten (when the input is still a feature map) -> linear -> activation."""

    def __init__(self, features: int, units: int, *, flatten: bool, act: str | None) -> None:
        super().__init__()
        self.flatten = flatten
        self.linear = nn.Linear(features, units)
        self.act_name = act
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flatten:
            x = torch.flatten(x, 1)
        out: torch.Tensor = self.act(self.linear(x))
        return out
