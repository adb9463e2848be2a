"""Light augmentation of a training batch: random shifts along the spatial axes (zeros
shifted in) and, only where the user allows them, flips of the last axis. Works on any
``(N, C, *spatial)`` batch: images ``(N, C, H, W)`` and 1-D windows ``(N, C, L)`` alike (a
flip of a window is a time reversal). Channels and labels are never touched."""

from __future__ import annotations

import itertools
from typing import Any

import torch

#: an axis is shifted by up to 1/SHIFT_FRACTION of its length (8 -> 1 pixel, 32 -> 4)
SHIFT_FRACTION = 8
#: an axis shorter than this is not shifted (a 1x8 image has nothing to move along its 1)
MIN_SHIFTED_LENGTH = 4


def max_shifts(spatial: tuple[int, ...]) -> tuple[int, ...]:
    """The largest shift along each spatial axis."""
    return tuple(max(1, n // SHIFT_FRACTION) if n >= MIN_SHIFTED_LENGTH else 0 for n in spatial)


def shift(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each sample of ``x`` moved by its own random offset along each spatial axis, in
    ``[-max, max]`` (:func:`max_shifts`), zeros shifted in; the same shape."""
    spatial = tuple(int(n) for n in x.shape[2:])
    limits = max_shifts(spatial)
    if not any(limits):
        return x
    offsets = torch.stack(
        [torch.randint(-m, m + 1, (len(x),), generator=generator) for m in limits], dim=1
    )
    padded = torch.nn.functional.pad(x, [p for m in reversed(limits) for p in (m, m)])
    out = torch.empty_like(x)
    # one copy per distinct offset (at most (2m+1)^axes of them), not one per sample
    for offset in itertools.product(*(range(-m, m + 1) for m in limits)):
        chosen = (offsets == torch.tensor(offset)).all(dim=1).nonzero().flatten()
        if len(chosen) == 0:
            continue
        window = [slice(m - o, m - o + n) for m, o, n in zip(limits, offset, spatial, strict=True)]
        index: tuple[Any, ...] = (chosen, slice(None), *window)
        out[chosen] = padded[index]
    return out


def flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Half the samples (at random) mirrored along the last axis; the same shape."""
    chosen = torch.rand(len(x), generator=generator) < 0.5
    out = x.clone()
    out[chosen] = x[chosen].flip(-1)
    return out


def augment(
    x: torch.Tensor, generator: torch.Generator, *, shifts: bool, flips: bool
) -> torch.Tensor:
    """The batch ``x`` as the settings augment it (``x`` itself when neither applies)."""
    if x.ndim < 3:  # no spatial axis: nothing to move
        return x
    if shifts:
        x = shift(x, generator)
    if flips:
        x = flip(x, generator)
    return x
