"""Samples as the block nets take them: channels first, at the data's own size.

Images go through ``search.training.data.to_nchw``; ``(L, C)`` signals (sensor windows,
audio feature frames) become N x C x L here. The resize to a candidate's resolution is the
net's own first step (candidate_net.py), so the data are converted once per search.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataError
from ..training.data import as_numpy, check_numeric, to_nchw


def to_channels_first(x: Any, input_shape: Sequence[int]) -> np.ndarray:
    """Float32 N x C x H x W from ``(H, W, C)`` samples, N x C x L from ``(L, C)`` ones
    (channels-last, or already channels-first)."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        return to_nchw(x, (shape[0], shape[1], shape[2]))
    length, channels = shape
    arr = as_numpy(x)
    check_numeric(arr.dtype, "the signals")
    if arr.ndim == 3 and arr.shape[1:] == (length, channels):
        arr = arr.transpose(0, 2, 1)
    elif arr.ndim == 3 and arr.shape[1:] == (channels, length):
        pass
    elif arr.ndim == 2 and channels == 1 and arr.shape[1] == length:
        arr = arr[:, None, :]
    else:
        raise DataError(
            f"samples of shape {tuple(arr.shape[1:])} do not fit the input shape {shape} (L, C)"
        )
    out = np.ascontiguousarray(arr, dtype=np.float32)
    bad = out.size - int(np.count_nonzero(np.isfinite(out)))
    if bad:
        raise DataError(f"the signals hold {bad} non-finite values (NaN or inf); clean them first")
    return out
