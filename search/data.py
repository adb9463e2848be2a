"""Training data: numpy arrays or torch tensors, ``.npz`` files, and the offline ``digits`` set.

Images arrive channels-last, as ``SearchSpace.input_shape`` is written: ``(N, H, W, C)``;
``(N, C, H, W)`` and flat ``(N, H*W*C)`` are accepted too. Inside, everything is float32
NCHW (what the torch module and the ONNX model take). Labels are integers ``(N,)``; one-hot
``(N, k)`` is turned into integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

DATASETS = ("digits",)


def as_numpy(data: Any) -> np.ndarray:
    """numpy arrays, torch tensors, or anything array-like."""
    if hasattr(data, "detach"):  # a torch tensor, without importing torch here
        data = data.detach().cpu().numpy()
    return np.asarray(data)


def to_nchw(x: Any, input_shape: tuple[int, int, int]) -> np.ndarray:
    """Float32 NCHW from channels-last (or NCHW, or flat) samples of ``input_shape``."""
    arr = as_numpy(x)
    h, w, c = input_shape
    if arr.ndim >= 1 and arr.shape[1:] == (h, w, c):
        arr = arr.transpose(0, 3, 1, 2)
    elif arr.ndim >= 1 and arr.shape[1:] == (c, h, w):
        pass
    elif arr.ndim == 2 and arr.shape[1] == h * w * c:
        arr = arr.reshape(-1, h, w, c).transpose(0, 3, 1, 2)
    elif arr.ndim == 3 and c == 1 and arr.shape[1:] == (h, w):
        arr = arr[:, None, :, :]
    else:
        raise DataError(
            f"samples of shape {tuple(arr.shape[1:])} do not fit the input shape "
            f"{input_shape} (H, W, C)"
        )
    return np.ascontiguousarray(arr, dtype=np.float32)


def labels(y: Any) -> np.ndarray:
    arr = as_numpy(y)
    if arr.ndim == 2 and arr.shape[1] > 1:
        arr = arr.argmax(axis=1)
    arr = arr.reshape(-1)
    if arr.size and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise DataError("labels must be integers (class indices) or one-hot rows")
    out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        raise DataError("labels must be >= 0")
    return out


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray  #: float32 NCHW
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def split(x: np.ndarray, y: np.ndarray, validation_split: float, seed: int) -> Split:
    """A seeded random split; the same seed gives the same split."""
    if len(x) != len(y):
        raise DataError(f"{len(x)} samples but {len(y)} labels")
    if not 0.0 < validation_split < 1.0:
        raise DataError(f"validation_split must be in (0, 1), got {validation_split}")
    n_val = max(1, round(len(x) * validation_split))
    if len(x) - n_val < 1:
        raise DataError(f"too few samples ({len(x)}) to hold out a validation split")
    order = np.random.default_rng(seed).permutation(len(x))
    val, train = order[:n_val], order[n_val:]
    return Split(x[train], y[train], x[val], y[val])


@dataclass(frozen=True)
class Arrays:
    """A dataset as loaded: channels-last ``x``, integer ``y``, an optional test part."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    name: str = "arrays"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        shape = tuple(int(d) for d in self.x.shape[1:])
        if len(shape) == 2:
            return (shape[0], shape[1], 1)
        if len(shape) != 3:
            raise DataError(f"images must be (N, H, W, C), got {self.x.shape}")
        return (shape[0], shape[1], shape[2])


def load_npz(path: str | Path) -> Arrays:
    """``x`` and ``y`` (and optionally ``x_test``, ``y_test``); ``x`` channels-last."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            files = set(npz.files)
            missing = {"x", "y"} - files
            if missing:
                raise DataError(f"{path}: missing arrays {sorted(missing)} (has {sorted(files)})")
            test = ("x_test" in files) and ("y_test" in files)
            return Arrays(
                npz["x"],
                labels(npz["y"]),
                npz["x_test"] if test else None,
                labels(npz["y_test"]) if test else None,
                name=Path(path).name,
            )
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def load_dataset(name: str, *, test_fraction: float = 0.2, seed: int = 0) -> Arrays:
    """A named offline dataset. ``digits``: scikit-learn's 8x8x1 digits, 10 classes, pixel
    values scaled to [0, 1], ``test_fraction`` held out as the test part."""
    if name != "digits":
        raise DataError(f"unknown dataset '{name}' (known: {', '.join(DATASETS)})")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[..., None]
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return Arrays(x[train], y[train], x[test], y[test], name="digits")
