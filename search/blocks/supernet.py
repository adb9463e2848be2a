"""Block kinds in supernet form: one module at a slot's largest sizes serves every choice.

A *slot* (:class:`SupernetSlot`, in base.py: no torch there) is one block position of a
stage supernet: its input and output channels at their largest, its stride, and the
choices it may take (one mapping of the kind's choice genes each: kernel, expansion, se).
A kind's ``supernet(slot)`` returns one of the modules here, which run every choice at
once with soft weights, as FBNetV2 and OFA share weights:

- **kernel**: one depthwise (or full) conv at the largest kernel; a smaller kernel is its
  centre crop (OFA), so the weight is multiplied by ``sum_k p(k) * centre_mask(k)``: one
  conv for every kernel (for odd kernels a centred k x k inside the largest, padded by
  ``K // 2``, gives the k x k conv padded by ``k // 2`` exactly);
- **expansion**: the hidden channels at the largest expansion, masked by ``sum_e p(e) *
  [h < e * cin]`` (``e = 1``: no expand conv, the input itself, as the block has none);
- **width**: the output masked by the soft mask the caller gives (the stage's width);
- **se**: the squeeze-excite gate mixed with 1 by ``p(se)`` (the squeeze width is the
  largest's: ``make_divisible(hidden // 4)`` of each choice shares its first channels).

Every conv is followed by BatchNorm on batch statistics (no running averages: they would
mix architectures) and the output is masked again after it, so a channel a choice does not
have stays exactly 0 (BatchNorm's shift would otherwise give it a value).

``forward(x, mask_in, weights, mask_out, residual)``: ``x`` at ``in_max`` channels whose
live channels ``mask_in`` says (soft: ``mask_in[c] = P(width > c)``), ``weights`` over
``slot.choices`` (they sum to 1), ``mask_out`` the output's, ``residual`` the probability
that the input is added back (the caller knows the widths' distributions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual torch spelling

from .base import SupernetSlot, make_divisible
from .layers import activation


def marginal(slot: SupernetSlot, weights: torch.Tensor, gene: str) -> dict[Any, torch.Tensor]:
    """P(gene = value) under ``weights`` over the slot's choices, per value."""
    out: dict[Any, torch.Tensor] = {}
    for j, picks in enumerate(slot.choices):
        value = picks[gene]
        out[value] = out[value] + weights[j] if value in out else weights[j]
    return out


def kernel_mask(kernels: dict[int, torch.Tensor], largest: int, dims: int) -> torch.Tensor:
    """``sum_k p(k) * centre_mask(k)`` over a ``largest``-sized window of ``dims`` axes."""
    total = torch.zeros((largest,) * dims)
    for k, p in kernels.items():
        lo = (largest - k) // 2
        inner = torch.zeros((largest,) * dims)
        index = tuple(slice(lo, lo + k) for _ in range(dims))
        inner[index] = 1.0
        total = total + p * inner
    return total


def _conv(dims: int) -> Any:
    return F.conv1d if dims == 1 else F.conv2d


def _norm(dims: int, channels: int) -> nn.Module:
    cls = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    return cls(channels, track_running_stats=False)


def _channels(mask: torch.Tensor, dims: int) -> torch.Tensor:
    """A per-channel mask shaped to multiply an N x C x spatial tensor."""
    return mask.reshape(1, -1, *([1] * dims))


def _fit_mask(mask: torch.Tensor, channels: int) -> torch.Tensor:
    """A 1-D channel mask cut or zero-padded to ``channels``."""
    if len(mask) >= channels:
        return mask[:channels]
    return F.pad(mask, (0, channels - len(mask)))


def _fit(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``x`` with ``channels`` channels: cut, or zero-padded."""
    have = x.shape[1]
    if have >= channels:
        return x[:, :channels]
    pad = [0, 0] * (x.dim() - 2) + [0, channels - have]
    return F.pad(x, pad)


class MaskedConv(nn.Module):
    """A conv (``groups`` 1) or depthwise conv (``depthwise``) at the largest kernel whose
    weight is masked to each kernel's centre, without bias (BatchNorm follows)."""

    def __init__(
        self, dims: int, cin: int, cout: int, kernel: int, stride: int, *, depthwise: bool
    ) -> None:
        super().__init__()
        self.dims, self.kernel, self.stride, self.depthwise = dims, kernel, stride, depthwise
        fan = 1 if depthwise else cin
        shape = (cout, fan, *([kernel] * dims))
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def forward(self, x: torch.Tensor, kernels: dict[int, torch.Tensor]) -> torch.Tensor:
        weight = self.weight * kernel_mask(kernels, self.kernel, self.dims)
        groups = x.shape[1] if self.depthwise else 1
        out: torch.Tensor = _conv(self.dims)(
            x, weight, None, self.stride, self.kernel // 2, 1, groups
        )
        return out


def _kernels(slot: SupernetSlot, weights: torch.Tensor) -> dict[int, torch.Tensor]:
    return marginal(slot, weights, "kernel")


class SupernetConv(nn.Module):
    """``conv``: conv (kernel-masked) -> BN -> act, output masked to the width."""

    def __init__(self, slot: SupernetSlot) -> None:
        super().__init__()
        self.slot = slot
        kernel = max(_kernel_choices(slot))
        self.conv = MaskedConv(
            slot.dims, slot.in_max, slot.out_max, kernel, slot.stride, depthwise=False
        )
        self.bn = _norm(slot.dims, slot.out_max)
        self.act = activation(slot.act)

    def forward(
        self,
        x: torch.Tensor,
        mask_in: torch.Tensor,
        weights: torch.Tensor,
        mask_out: torch.Tensor,
        residual: torch.Tensor | float = 0.0,
    ) -> torch.Tensor:
        y = self.act(self.bn(self.conv(x, _kernels(self.slot, weights))))
        out: torch.Tensor = y * _channels(mask_out, self.slot.dims)
        return out


class SupernetDepthwise(nn.Module):
    """``dwconv``: depthwise (kernel-masked) -> BN -> act, pointwise -> BN -> act."""

    def __init__(self, slot: SupernetSlot) -> None:
        super().__init__()
        self.slot = slot
        kernel = max(_kernel_choices(slot))
        self.depthwise = MaskedConv(
            slot.dims, slot.in_max, slot.in_max, kernel, slot.stride, depthwise=True
        )
        self.bn_dw = _norm(slot.dims, slot.in_max)
        self.pointwise = _conv_module(slot.dims, slot.in_max, slot.out_max)
        self.bn = _norm(slot.dims, slot.out_max)
        self.act = activation(slot.act)

    def forward(
        self,
        x: torch.Tensor,
        mask_in: torch.Tensor,
        weights: torch.Tensor,
        mask_out: torch.Tensor,
        residual: torch.Tensor | float = 0.0,
    ) -> torch.Tensor:
        dims = self.slot.dims
        inner = self.act(self.bn_dw(self.depthwise(x, _kernels(self.slot, weights))))
        inner = inner * _channels(mask_in, dims)
        y = self.act(self.bn(self.pointwise(inner)))
        out: torch.Tensor = y * _channels(mask_out, dims)
        return out


class SupernetInvertedResidual(nn.Module):
    """``mbconv``: expand (masked to the expansion) -> depthwise (kernel-masked) ->
    [squeeze-excite, mixed by p(se)] -> project -> BN, masked to the width, plus the input
    with the probability that the block has its residual."""

    def __init__(self, slot: SupernetSlot) -> None:
        super().__init__()
        self.slot = slot
        dims = slot.dims
        expansions = sorted({int(c["expansion"]) for c in slot.choices})
        self.expansions = expansions
        self.hidden = slot.in_max * max(expansions)
        self.expand: nn.Module | None = None
        if any(e != 1 for e in expansions):
            self.expand = _conv_module(dims, slot.in_max, self.hidden)
            self.bn_expand = _norm(dims, self.hidden)
        kernel = max(_kernel_choices(slot))
        self.depthwise = MaskedConv(
            dims, self.hidden, self.hidden, kernel, slot.stride, depthwise=True
        )
        self.bn_dw = _norm(dims, self.hidden)
        self.has_se = any(bool(c["se"]) for c in slot.choices)
        if self.has_se:
            squeeze = make_divisible(self.hidden // 4, 8)
            self.reduce = _conv_module(dims, self.hidden, squeeze, bias=True)
            self.grow = _conv_module(dims, squeeze, self.hidden, bias=True)
        self.project = _conv_module(dims, self.hidden, slot.out_max)
        self.bn = _norm(dims, slot.out_max)
        self.act = activation(slot.act)

    def forward(
        self,
        x: torch.Tensor,
        mask_in: torch.Tensor,
        weights: torch.Tensor,
        mask_out: torch.Tensor,
        residual: torch.Tensor | float = 0.0,
    ) -> torch.Tensor:
        slot, dims = self.slot, self.slot.dims
        p_e = marginal(slot, weights, "expansion")
        # hidden channel h is live for expansion e when h < e x cin: P(cin > h / e)
        hidden_mask = torch.zeros(self.hidden)
        h = torch.zeros(())
        if self.expand is not None:
            expanded = self.act(self.bn_expand(self.expand(x)))
            mix = torch.zeros(self.hidden)
            for e, p in p_e.items():
                if e != 1:
                    mix = mix + p * _fit_mask(mask_in.repeat_interleave(e), self.hidden)
            h = expanded * _channels(mix, dims)
            hidden_mask = hidden_mask + mix
        if 1 in p_e:
            h = h + p_e[1] * _fit(x, self.hidden)
            hidden_mask = hidden_mask + p_e[1] * _fit_mask(mask_in, self.hidden)
        y = self.act(self.bn_dw(self.depthwise(h, _kernels(slot, weights))))
        y = y * _channels(hidden_mask, dims)
        if self.has_se:
            p_se = marginal(slot, weights, "se").get(True, torch.zeros(()))
            pooled = y.mean(dim=tuple(range(2, y.dim())), keepdim=True)
            gate = F.hardsigmoid(self.grow(torch.relu(self.reduce(pooled))))
            y = y * (p_se * gate + (1.0 - p_se))
        out = self.bn(self.project(y)) * _channels(mask_out, dims)
        if slot.stride == 1:
            out = out + residual * _fit(x, slot.out_max)
        result: torch.Tensor = out
        return result


def _conv_module(dims: int, cin: int, cout: int, *, bias: bool = False) -> nn.Module:
    cls = nn.Conv1d if dims == 1 else nn.Conv2d
    return cls(cin, cout, 1, bias=bias)


def _kernel_choices(slot: SupernetSlot) -> Sequence[int]:
    return [int(c["kernel"]) for c in slot.choices]


__all__ = [
    "MaskedConv",
    "SupernetConv",
    "SupernetDepthwise",
    "SupernetInvertedResidual",
    "kernel_mask",
    "marginal",
]
