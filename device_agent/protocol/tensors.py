"""Input tensors on the wire: a NumPy ``.npz`` archive, read without pickle.

``np.load(..., allow_pickle=False)`` refuses object arrays. Before anything is read, each
member's ``.npy`` header is parsed and its shape × itemsize checked against the cap and
against the bytes the member holds, and the archive's declared member sizes are summed:
``np.load`` allocates from the header's shape before it reads the data, so a few hundred
bytes declaring a huge shape would otherwise reserve gigabytes. A hostile pack can neither
run code nor make the agent allocate more than the cap.
"""

from __future__ import annotations

import io
import zipfile
from typing import IO, Dict, List, Mapping, Tuple

import numpy as np


class TensorPackError(ValueError):
    """An input pack that cannot be read safely (damaged, or not arrays)."""


class TensorPackTooLargeError(TensorPackError):
    """An input pack whose arrays, once unpacked, would exceed the cap."""


def pack_tensors(tensors: Mapping[str, np.ndarray]) -> bytes:
    """Serialise named arrays (uncompressed: model inputs are rarely compressible)."""
    buf = io.BytesIO()
    # asarray, not ascontiguousarray: that one turns a 0-d input into shape (1,)
    arrays = {name: np.asarray(a, order="C") for name, a in tensors.items()}
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types the kwargs poorly
    return buf.getvalue()


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def _read_header(member: IO[bytes], name: str) -> Tuple[List[int], np.dtype]:
    """Shape and dtype from a ``.npy`` header; reads the header only."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(member)
        else:
            raise ValueError(f".npy format version {version} is not supported")
    except ValueError as exc:
        raise TensorPackError(f"input '{name}' is not a readable .npy array: {exc}") from exc
    return [int(d) for d in shape], np.dtype(dtype)


def _check_members(archive: zipfile.ZipFile, max_bytes: int) -> None:
    """Check each member's claimed array size against the cap and its own size."""
    total = 0
    for info in archive.infolist():
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        with archive.open(info) as member:
            shape, dtype = _read_header(member, name)
            held = info.file_size - member.tell()
        count = 1
        for d in shape:  # Python ints: no overflow, whatever the header says
            count *= d
        nbytes = count * dtype.itemsize
        total += nbytes
        if total > max_bytes:
            before = f" (with the inputs before it, {total} bytes)" if total > nbytes else ""
            raise TensorPackTooLargeError(
                f"input '{name}' of shape {shape} ({dtype}) needs {nbytes} bytes "
                f"({_mib(nbytes)}){before}; the agent's input cap is {max_bytes} bytes "
                f"({_mib(max_bytes)}); send smaller inputs, or raise the cap with the "
                "agent's --max-input-mb"
            )
        if nbytes != held:
            raise TensorPackError(
                f"damaged input pack: input '{name}' of shape {shape} ({dtype}) should "
                f"hold {nbytes} bytes of data, and holds {held}"
            )


def unpack_tensors(data: bytes, max_bytes: int) -> Dict[str, np.ndarray]:
    """Read a pack made by :func:`pack_tensors`; raise TensorPackError on anything else,
    TensorPackTooLargeError when its arrays would take more than ``max_bytes``."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            _check_members(archive, max_bytes)
            declared = sum(info.file_size for info in archive.infolist())
            if declared > max_bytes:
                raise TensorPackTooLargeError(
                    f"input pack expands to {declared} bytes; the limit is {max_bytes} "
                    "(agent option --max-input-mb)"
                )
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except TensorPackError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, KeyError, EOFError) as exc:
        raise TensorPackError(f"not a readable .npz input pack: {exc}") from exc
