"""Training data: numpy arrays or torch tensors, ``.npz`` files, and the offline ``digits`` set.

Images arrive channels-last, as ``SearchSpace.input_shape`` is written: ``(N, H, W, C)``;
``(N, C, H, W)`` and flat ``(N, H*W*C)`` are accepted too. Inside, everything is float32
NCHW (what the torch module and the ONNX model take). Labels are integers ``(N,)``; one-hot
``(N, k)`` is turned into integers.

Files are read by :func:`read_npz` (``hwnas compress`` reads its calibration and evaluation
files through it too): each array's ``.npy`` header is read first and refused, before
anything is inflated or allocated, when its dtype is not numbers or it would be larger
than :data:`MAX_DATA_BYTES`. Pickled arrays are never loaded.
"""

from __future__ import annotations

import math
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import DataError

DATASETS = ("digits",)

#: The most the arrays read from one data file may take in memory, each counted as the
#: float32 it becomes (digits' x is 0.4 MB; 60,000 28x28 MNIST images are 188 MB). A header
#: that claims more is refused before anything is inflated or allocated.
MAX_DATA_BYTES = 2 * 1024**3
#: dtype kinds that are numbers: bool, signed and unsigned integers, floats
NUMERIC_KINDS = "biuf"
_KIND_NAMES = {
    "U": "string",
    "S": "byte-string",
    "O": "object",
    "V": "structured",
    "M": "datetime64",
    "m": "timedelta64",
    "c": "complex",
}
_HEADER_ROOM = 1 << 16  #: the most a member's .npy header may add to its data's size
_NPY_MAGIC = b"\x93NUMPY"
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, struct.error)


def check_numeric(dtype: np.dtype[Any], what: str) -> None:
    """Refuse strings (digit strings too), objects, structured records, datetimes and complex
    numbers: each would be cast to float32 silently, or crash the cast."""
    if dtype.kind in NUMERIC_KINDS and dtype.fields is None and dtype.subdtype is None:
        return
    kind = _KIND_NAMES.get(dtype.kind, "non-numeric")
    hint = " (convert them: astype(numpy.float32))" if dtype.kind in "US" else ""
    raise DataError(f"{what} must be numbers, not {kind} values ({dtype}){hint}")


def as_numpy(data: Any) -> np.ndarray:
    """numpy arrays, torch tensors, or anything array-like."""
    if hasattr(data, "detach"):  # a torch tensor, without importing torch here
        data = data.detach().cpu().numpy()
    try:
        return np.asarray(data)
    except (ValueError, TypeError) as exc:  # ragged lists and the like
        raise DataError(f"not an array: {str(exc).splitlines()[0]}") from exc


def _mb(n: int) -> str:
    return f"{n / 1024**2:,.1f} MB"


def _not_npz(path: Path, source: str) -> str:
    """Why a file that zipfile cannot open is no .npz, and what to do."""
    with open(path, "rb") as fh:
        head = fh.read(len(_NPY_MAGIC))
    if not head:
        return f"cannot read {source}: the file is empty (numpy.savez(path, x=x, y=y) writes one)"
    if head == _NPY_MAGIC:
        return (
            f"cannot read {source}: it is one .npy array, not an .npz of named arrays; "
            "save them together: numpy.savez(path, x=x, y=y)"
        )
    return f"cannot read {source}: not an .npz file (numpy.savez(path, x=x, y=y) writes one)"


def _header(fp: IO[bytes], name: str, source: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """(shape, dtype) from a member's .npy header, reading nothing past it."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise DataError(f"{source}: {name} is a .npy of version {version}, not read here")
    if any(d < 0 for d in shape):
        raise DataError(f"{source}: {name} has a header of shape {shape}")
    return tuple(int(d) for d in shape), dtype


def read_npz(
    path: str | Path, wanted: Sequence[str], *, max_bytes: int | None = None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """(the arrays of ``wanted`` that ``path`` holds, the names of all it holds).

    Every wanted array is checked before it is read: its member's inflated size and its
    header's shape x itemsize (as float32 at least) against ``max_bytes`` in all, its dtype
    numeric (``max_bytes`` None: :data:`MAX_DATA_BYTES`). Raises DataError (one line, naming
    the file and the array) for a file that is missing, empty, no .npz, truncated, too
    large, or holds arrays that are not numbers.
    """
    source = str(path)
    max_bytes = MAX_DATA_BYTES if max_bytes is None else max_bytes
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataError(_not_npz(Path(path), source)) from None
    except _READ_ERRORS as exc:
        raise DataError(f"cannot read {source}: {exc}") from exc
    with archive:
        members: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            members.setdefault(info.filename.removesuffix(".npy"), info)
        found: dict[str, np.ndarray] = {}
        total = 0
        for name in wanted:
            member = members.get(name)
            if member is None:
                continue
            info = member
            if info.file_size > max_bytes + _HEADER_ROOM:  # a zip bomb inflates past the cap
                raise DataError(
                    f"{source}: {name} inflates to {_mb(info.file_size)}, over the "
                    f"{_mb(max_bytes)} a data file may hold"
                )
            try:
                with archive.open(info) as fp:
                    shape, dtype = _header(fp, name, source)
                    offset = fp.tell()
            except DataError:
                raise
            except (*_READ_ERRORS, RuntimeError, NotImplementedError) as exc:
                raise DataError(f"cannot read {source}: {name}: {exc}") from exc
            check_numeric(dtype, f"{source}: {name}")
            count = math.prod(shape)
            total += count * max(dtype.itemsize, 4)
            if total > max_bytes:
                raise DataError(
                    f"{source}: {name} of shape {shape} ({dtype}) would take "
                    f"{_mb(count * max(dtype.itemsize, 4))}, over the {_mb(max_bytes)} a data "
                    "file may hold"
                )
            if info.file_size < offset + count * dtype.itemsize:
                raise DataError(
                    f"{source}: {name} is truncated: its header says shape {shape} ({dtype}), "
                    f"{count * dtype.itemsize} bytes, the file holds {info.file_size - offset}"
                )
            try:
                with archive.open(info) as fp:
                    found[name] = np.lib.format.read_array(fp, allow_pickle=False)
            except (*_READ_ERRORS, RuntimeError, NotImplementedError) as exc:
                raise DataError(f"cannot read {source}: {name}: {exc}") from exc
    return found, sorted(members)


def to_nchw(x: Any, input_shape: tuple[int, int, int]) -> np.ndarray:
    """Float32 NCHW from channels-last (or NCHW, or flat) samples of ``input_shape``."""
    arr = as_numpy(x)
    check_numeric(arr.dtype, "the images")
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
    if arr.dtype.kind not in NUMERIC_KINDS:  # strings, complex, datetime64, objects
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


def channels_first_hint(shape: tuple[int, ...]) -> str | None:
    """The transpose to apply when ``shape`` (N, a, b, c) looks channels-first: a first
    image axis of 1 or 3, much smaller than the two after it (``(N, 1, 8, 8)`` would be
    searched as 1x8 images of 8 channels, and train worse, without a word)."""
    if len(shape) != 4 or shape[1] not in (1, 3) or min(shape[2], shape[3]) < 4 * shape[1]:
        return None
    _, c, h, w = shape
    return (
        f"x of shape {shape} looks channels-first (N, C, H, W): {h}x{w} images of {c} "
        f"channel(s); the search takes channels-last (N, H, W, C): save "
        f"x.transpose(0, 2, 3, 1) (if {shape[1:]} really is (H, W, C), pass "
        "--channels-first-ok)"
    )


def load_npz(
    path: str | Path, *, allow_channels_first: bool = False, max_bytes: int | None = None
) -> Arrays:
    """``x`` and ``y`` (and optionally ``x_test``, ``y_test``); ``x`` channels-last.

    ``x`` that looks channels-first (:func:`channels_first_hint`) is refused unless
    ``allow_channels_first``; a file is read within ``max_bytes`` (:func:`read_npz`).
    """
    arrays, files = read_npz(path, ("x", "y", "x_test", "y_test"), max_bytes=max_bytes)
    missing = {"x", "y"} - set(arrays)
    if missing:
        raise DataError(f"{path}: missing arrays {sorted(missing)} (has {files})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: x_test and y_test come together; it has only one")
    x = arrays["x"]
    hint = None if allow_channels_first else channels_first_hint(tuple(x.shape))
    if hint is not None:
        raise DataError(f"{path}: {hint}")
    test = "x_test" in arrays
    return Arrays(
        x,
        labels(arrays["y"]),
        arrays["x_test"] if test else None,
        labels(arrays["y_test"]) if test else None,
        name=Path(path).name,
    )


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
