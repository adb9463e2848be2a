"""Input tensors on the wire: a NumPy ``.npz`` archive, read without pickle.

``np.load(..., allow_pickle=False)`` refuses object arrays, and the declared sizes of the
archive members are checked before anything is decompressed, so a hostile pack can neither
run code nor inflate into more memory than the agent allows.
"""

from __future__ import annotations

import io
import zipfile
from typing import Dict, Mapping

import numpy as np


class TensorPackError(ValueError):
    """An input pack that cannot be read safely."""


def pack_tensors(tensors: Mapping[str, np.ndarray]) -> bytes:
    """Serialise named arrays (uncompressed: model inputs are rarely compressible)."""
    buf = io.BytesIO()
    arrays = {name: np.ascontiguousarray(a) for name, a in tensors.items()}
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types the kwargs poorly
    return buf.getvalue()


def unpack_tensors(data: bytes, max_bytes: int) -> Dict[str, np.ndarray]:
    """Read a pack made by :func:`pack_tensors`; raise TensorPackError on anything else."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            declared = sum(info.file_size for info in archive.infolist())
            if declared > max_bytes:
                raise TensorPackError(
                    f"input pack expands to {declared} bytes; the limit is {max_bytes}"
                )
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except TensorPackError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, KeyError, EOFError) as exc:
        raise TensorPackError(f"not a readable .npz input pack: {exc}") from exc
