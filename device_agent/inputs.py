"""Model inputs: synthesised from declared shapes and dtypes, or checked when sent by the host."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .errors import AgentError
from .protocol import ErrorCode

#: onnxruntime's type strings for the tensor element types NumPy can hold.
ORT_DTYPES: Dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


def _dtype_of(name: str, ort_type: str) -> Any:
    try:
        return ORT_DTYPES[ort_type]
    except KeyError:
        raise AgentError(
            ErrorCode.BAD_INPUT,
            f"input '{name}' has type {ort_type}, which cannot be synthesised; send inputs "
            "from the host",
        ) from None


def resolve_shape(
    name: str, declared: Sequence[Any], dims: Optional[Mapping[str, int]]
) -> List[int]:
    """Concrete shape: symbolic dims from ``dims`` (default 1), unnamed dynamic dims 1."""
    shape: List[int] = []
    for axis, dim in enumerate(declared):
        if isinstance(dim, int) and dim >= 0:
            shape.append(dim)
        elif isinstance(dim, str) and dims and dim in dims:
            shape.append(int(dims[dim]))
        elif dims and f"{name}:{axis}" in dims:
            shape.append(int(dims[f"{name}:{axis}"]))
        else:
            shape.append(1)
    return shape


def synthesise(
    declared: Sequence[Any], dims: Optional[Mapping[str, int]], seed: int
) -> Dict[str, np.ndarray]:
    """Random inputs for ``session.get_inputs()``: normal floats, small non-negative ints."""
    rng = np.random.default_rng(seed)
    feeds: Dict[str, np.ndarray] = {}
    for arg in declared:
        dtype = _dtype_of(arg.name, arg.type)
        shape = resolve_shape(arg.name, arg.shape, dims)
        if np.issubdtype(dtype, np.floating):
            feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype is np.bool_:
            feeds[arg.name] = rng.random(shape) < 0.5
        else:  # integer inputs are usually indices: keep them small and valid
            feeds[arg.name] = rng.integers(0, 10, size=shape).astype(dtype)
    return feeds


def check(declared: Sequence[Any], feeds: Mapping[str, np.ndarray]) -> None:
    """Raise BAD_INPUT naming the input when host-sent inputs do not fit the model."""
    expected = {arg.name: arg for arg in declared}
    missing = sorted(set(expected) - set(feeds))
    extra = sorted(set(feeds) - set(expected))
    if missing or extra:
        raise AgentError(
            ErrorCode.BAD_INPUT,
            f"input names do not match the model: missing {missing}, unexpected {extra}",
        )
    for name, arg in expected.items():
        array = feeds[name]
        dtype = _dtype_of(name, arg.type)
        if array.dtype != np.dtype(dtype):
            raise AgentError(
                ErrorCode.BAD_INPUT,
                f"input '{name}' has dtype {array.dtype}; the model expects {np.dtype(dtype)}",
            )
        if len(array.shape) != len(arg.shape) or any(
            isinstance(d, int) and d >= 0 and d != got for d, got in zip(arg.shape, array.shape)
        ):
            raise AgentError(
                ErrorCode.BAD_INPUT,
                f"input '{name}' has shape {list(array.shape)}; the model expects "
                f"{list(arg.shape)}",
            )


def describe(feeds: Mapping[str, np.ndarray]) -> List[Dict[str, Any]]:
    return [{"name": k, "dtype": str(v.dtype), "shape": list(v.shape)} for k, v in feeds.items()]
