"""Calibration and evaluation data: ``.npz`` files (``x`` laid out as the model's input,
``y`` integer labels) checked against the model, and the reader ORT's calibrator pulls."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from ..errors import DataError
from ..training.data import check_numeric, read_npz
from ..training.data import labels as as_labels
from .errors import CalibrationDataError
from .model import ClassifierInfo


@dataclass(frozen=True)
class Labelled:
    """Samples in the model's layout (float32) and their labels (None: unlabelled)."""

    x: np.ndarray
    y: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, n: int, seed: int) -> Labelled:
        """At most ``n`` samples, drawn seeded (calibration needs a few hundred, not all)."""
        if len(self.x) <= n:
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self.x), n, replace=False))
        return Labelled(self.x[idx], None if self.y is None else self.y[idx], self.source)


def _shape_hint(got: tuple[int, ...], want: tuple[int, ...]) -> str:
    if got == want:
        return "; it looks like one sample: add the batch axis (x[None])"
    if len(got) == 3 and len(want) == 3 and got == (want[1], want[2], want[0]):
        return "; it is channels-last (N, H, W, C): pass x.transpose(0, 3, 1, 2)"
    if len(got) == 1 and int(np.prod(want)) == got[0]:
        return f"; it is flat: pass x.reshape(-1, {', '.join(str(d) for d in want)})"
    return ""


def check_arrays(
    x: object, y: object, info: ClassifierInfo, source: str, *, need_labels: bool = True
) -> Labelled:
    """``x`` and ``y`` as compression uses them, or one CalibrationDataError saying what is
    wrong and how to fix it."""
    arr = np.asarray(x)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise CalibrationDataError(f"{source}: x holds no samples")
    got = tuple(int(d) for d in arr.shape[1:])
    if got != info.sample_shape:
        raise CalibrationDataError(
            f"{source}: x has samples of shape {got}, the model takes {info.sample_shape} "
            f"(x must be {info.describe_shape()}){_shape_hint(got, info.sample_shape)}"
        )
    try:
        check_numeric(arr.dtype, f"{source}: x")
    except DataError as exc:
        raise CalibrationDataError(str(exc)) from exc
    xf = np.ascontiguousarray(arr, dtype=np.float32)
    bad = xf.size - int(np.count_nonzero(np.isfinite(xf)))
    if bad:
        raise CalibrationDataError(f"{source}: x holds {bad} non-finite values (NaN or inf)")
    if y is None:
        if need_labels:
            raise CalibrationDataError(f"{source}: no labels y (integer class indices)")
        return Labelled(xf, None, source)
    try:
        ys = as_labels(y)
    except DataError as exc:
        raise CalibrationDataError(f"{source}: {exc}") from exc
    if len(ys) != len(xf):
        raise CalibrationDataError(f"{source}: x holds {len(xf)} samples but y {len(ys)} labels")
    if ys.size and int(ys.max()) >= info.num_classes:
        raise CalibrationDataError(
            f"{source}: label {int(ys.max())} out of range for a model with "
            f"{info.num_classes} outputs (labels must be 0..{info.num_classes - 1})"
        )
    return Labelled(xf, ys, source)


def load_npz(path: str | Path, info: ClassifierInfo, *, need_labels: bool = True) -> Labelled:
    """Read and check ``x`` (and ``y``) from ``path``: its headers first, within
    ``search.training.data.MAX_DATA_BYTES`` (``search.training.data.read_npz``), never a pickle."""
    source = str(path)
    try:
        arrays, files = read_npz(path, ("x", "y"))
    except DataError as exc:  # not a file, not an npz, too large, not numbers
        raise CalibrationDataError(str(exc)) from exc
    if "x" not in arrays:
        raise CalibrationDataError(
            f"{source}: no array 'x' (it has {files}); give x shaped "
            f"{info.describe_shape()} as the model takes, and y (integer labels)"
        )
    if need_labels and "y" not in arrays:
        raise CalibrationDataError(
            f"{source}: no array 'y' (it has {files}); accuracy needs integer labels y"
        )
    x, y = arrays["x"], arrays.get("y")
    return check_arrays(x, y, info, source, need_labels=need_labels)


class CalibrationReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds ORT's calibrator the samples one batch at a time (batch 1 where the model's
    batch axis is fixed at 1, as the search's models are)."""

    def __init__(self, x: np.ndarray, info: ClassifierInfo, batch: int = 32) -> None:
        self.x, self.info = x, info
        self.batch = 1 if isinstance(info.batch_dim, int) else batch
        if isinstance(info.batch_dim, int) and info.batch_dim > 1:
            self.batch = info.batch_dim
        self._it: Iterator[dict[str, np.ndarray]] = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self.x) - self.batch + 1, self.batch):
            yield {self.info.input_name: self.x[i : i + self.batch]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = self._batches()

    def __len__(self) -> int:
        return len(self.x) // self.batch
