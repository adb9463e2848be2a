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
    out = np.ascontiguousarray(arr, dtype=np.float32)
    bad = out.size - int(np.count_nonzero(np.isfinite(out)))
    if bad:  # NaN weights would train, export and be measured as if they were a model
        raise DataError(f"the images hold {bad} non-finite values (NaN or inf); clean them first")
    return out


def labels(y: Any) -> np.ndarray:
    arr = as_numpy(y)
    if arr.ndim == 2 and arr.shape[1] > 1:
        arr = arr.argmax(axis=1)
    arr = arr.reshape(-1)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise DataError(f"labels must be integers (class indices), not {arr.dtype} values")
    if arr.size and not np.all(np.isfinite(arr)):
        raise DataError("labels must be integers (class indices); found NaN or inf")
    if arr.size and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise DataError("labels must be integers (class indices) or one-hot rows")
    out = arr.astype(np.int64)
    if out.size and out.min() < 0:
        raise DataError("labels must be >= 0")
    return out


#: More classes than this many times the labels seen is a labelling mistake, not a dataset.
SPARSE_LABELS_FACTOR = 4


def class_count(y: np.ndarray, num_classes: int | None = None) -> int:
    """The number of classes: ``num_classes``, or inferred from integer labels 0..k-1.

    Refuses fewer than two classes, labels beyond ``num_classes``, and labels that skip most
    numbers (``{0, 1e6}`` would build a million-way classifier and exhaust the memory).
    """
    distinct = int(np.unique(y).size) if y.size else 0
    if num_classes is not None:
        if num_classes < 2:
            raise DataError(f"num_classes must be >= 2, got {num_classes}")
        if y.size and int(y.max()) >= num_classes:
            raise DataError(f"label {int(y.max())} out of range for {num_classes} classes")
        return num_classes
    if distinct < 2:
        raise DataError(f"the labels hold {distinct} class(es); a classifier needs at least 2")
    inferred = int(y.max()) + 1
    if inferred > SPARSE_LABELS_FACTOR * distinct:
        raise DataError(
            f"{distinct} distinct labels, the largest {inferred - 1}: labels must be class "
            "indices 0..k-1 (remap them, e.g. numpy.unique(y, return_inverse=True)[1], "
            "or give num_classes)"
        )
    return inferred


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
            if ("x_test" in files) != ("y_test" in files):
                raise DataError(f"{path}: x_test and y_test come together; it has only one")
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
