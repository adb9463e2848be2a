"""Model inputs: synthesised from declared shapes and dtypes, or checked when sent by the host.

Both are bounded: a shape's bytes are worked out from the shape and the itemsize before
anything is allocated, and refused above the agent's cap (``INPUT_TOO_LARGE``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import AgentError, out_of_memory
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

#: Synthesised integers: positive (a divisor is never 0) and small (indices mostly in range).
INT_LOW, INT_HIGH = 1, 9


@dataclass
class Feeds:
    """The arrays a benchmark runs on, and how they came to be."""

    arrays: Dict[str, np.ndarray]
    described: List[Dict[str, Any]]  #: the reply's ``inputs`` entries
    synthesised: List[str] = field(default_factory=list)  #: names of generated inputs
    defaulted: List[str] = field(default_factory=list)  #: dims not given, set to 1


def _dtype_of(name: str, ort_type: str) -> Any:
    try:
        return ORT_DTYPES[ort_type]
    except KeyError:
        raise AgentError(
            ErrorCode.BAD_INPUT,
            f"input '{name}' has type {ort_type}, which cannot be synthesised; send it from "
            "the host with --inputs FILE.npz (inputs= in Python)",
        ) from None


def _is_static(dim: Any) -> bool:
    return isinstance(dim, int) and dim >= 0


def declared_shape(shape: Sequence[Any]) -> List[Any]:
    """The model's shape as JSON: ints, symbolic names as strings, unnamed dims None."""
    return [d if _is_static(d) or isinstance(d, str) else None for d in shape]


def dynamic_dims(declared: Sequence[Any]) -> List[str]:
    """Every name ``dims`` may use: symbolic names, and ``input:axis`` for each dynamic axis."""
    names: List[str] = []
    for arg in declared:
        for axis, dim in enumerate(arg.shape):
            if _is_static(dim):
                continue
            if isinstance(dim, str) and dim not in names:
                names.append(dim)
            names.append(f"{arg.name}:{axis}")
    return names


def check_dim_names(declared: Sequence[Any], dims: Optional[Mapping[str, int]]) -> None:
    """Refuse a ``dims`` name the model does not have: a typo would measure the default."""
    if not dims:
        return
    known = dynamic_dims(declared)
    unknown = sorted(set(dims) - set(known))
    if unknown:
        offered = ", ".join(known) if known else "none: all its input shapes are fixed"
        raise AgentError(
            ErrorCode.BAD_INPUT,
            f"the model has no dynamic dim {', '.join(repr(u) for u in unknown)}; its dynamic "
            f"dims are: {offered} (CLI --dim NAME=INT)",
        )


def resolve(
    name: str, declared: Sequence[Any], dims: Optional[Mapping[str, int]]
) -> Tuple[List[int], List[str]]:
    """Concrete shape and the dims that were not given (set to 1).

    A symbolic dim takes ``dims[name]``, else ``dims["input:axis"]``; an unnamed dynamic dim
    takes ``dims["input:axis"]``; what is not given is 1.
    """
    shape: List[int] = []
    defaulted: List[str] = []
    for axis, dim in enumerate(declared):
        by_axis = f"{name}:{axis}"
        if _is_static(dim):
            shape.append(dim)
        elif isinstance(dim, str) and dims and dim in dims:
            shape.append(int(dims[dim]))
        elif dims and by_axis in dims:
            shape.append(int(dims[by_axis]))
        else:
            shape.append(1)
            defaulted.append(dim if isinstance(dim, str) else by_axis)
    return shape, defaulted


def resolve_shape(
    name: str, declared: Sequence[Any], dims: Optional[Mapping[str, int]]
) -> List[int]:
    """Concrete shape: symbolic dims from ``dims`` (default 1), unnamed dynamic dims 1."""
    return resolve(name, declared, dims)[0]


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


def check_size(name: str, shape: Sequence[int], dtype: Any, total: int, cap: int) -> int:
    """Bytes of the input, refused when it would take the inputs above ``cap``."""
    count = 1
    for d in shape:  # Python ints: no overflow, whatever the dims
        count *= int(d)
    nbytes = count * int(np.dtype(dtype).itemsize)
    if total + nbytes > cap:
        raise AgentError(
            ErrorCode.INPUT_TOO_LARGE,
            f"input '{name}' of shape {list(shape)} ({np.dtype(dtype)}) needs {nbytes} bytes "
            f"({_mib(nbytes)}); the agent's input cap is {cap} bytes ({_mib(cap)}); use "
            "smaller dims, or raise the cap with the agent's --max-input-mb",
        )
    return nbytes


def _generate(rng: np.random.Generator, shape: List[int], dtype: Any) -> np.ndarray:
    values: np.ndarray
    if np.issubdtype(dtype, np.floating):  # float32 directly: no float64 copy twice the size
        gen = np.float64 if dtype is np.float64 else np.float32
        values = rng.standard_normal(shape, dtype=gen)
    elif dtype is np.bool_:
        values = rng.random(shape, dtype=np.float32) < 0.5
    else:
        values = rng.integers(INT_LOW, INT_HIGH + 1, size=shape, dtype=dtype)
    # a 0-d shape gives a NumPy scalar, which onnxruntime refuses: always an ndarray
    return np.asarray(values, dtype=dtype).reshape(shape)


def synthesise(
    declared: Sequence[Any], dims: Optional[Mapping[str, int]], seed: int, cap: int = 1024**3
) -> Dict[str, np.ndarray]:
    """Random inputs for ``session.get_inputs()``: normal floats, small positive ints."""
    return synthesise_feeds(declared, dims, seed, cap).arrays


def synthesise_feeds(
    declared: Sequence[Any], dims: Optional[Mapping[str, int]], seed: int, cap: int
) -> Feeds:
    """`synthesise`, with the description the reply carries."""
    check_dim_names(declared, dims)
    rng = np.random.default_rng(seed)
    plan: List[Tuple[str, List[int], Any, List[str], List[Any]]] = []
    total = 0
    for arg in declared:  # every size is checked before the first allocation
        dtype = _dtype_of(arg.name, arg.type)
        shape, defaulted = resolve(arg.name, arg.shape, dims)
        total += check_size(arg.name, shape, dtype, total, cap)
        plan.append((arg.name, shape, dtype, defaulted, declared_shape(arg.shape)))
    arrays: Dict[str, np.ndarray] = {}
    described: List[Dict[str, Any]] = []
    all_defaulted: List[str] = []
    for name, shape, dtype, defaulted, decl in plan:
        try:
            arrays[name] = _generate(rng, shape, dtype)
        except MemoryError as exc:
            raise out_of_memory(f"synthesising input '{name}' of shape {shape}") from exc
        described.append(_entry(name, arrays[name], decl, defaulted))
        all_defaulted += [d for d in defaulted if d not in all_defaulted]
    return Feeds(arrays, described, list(arrays), all_defaulted)


def _entry(name: str, array: np.ndarray, decl: List[Any], defaulted: List[str]) -> Dict[str, Any]:
    return {
        "name": name,
        "dtype": str(array.dtype),
        "shape": list(array.shape),
        "declared": decl,
        "defaulted": defaulted,
    }


def received(
    declared: Sequence[Any], pack: Mapping[str, np.ndarray], dims: Optional[Mapping[str, int]]
) -> Feeds:
    """Host-sent inputs, checked against the model."""
    check_dim_names(declared, dims)
    check(declared, pack)
    by_name = {arg.name: declared_shape(arg.shape) for arg in declared}
    described = [_entry(name, pack[name], by_name[name], []) for name in pack]
    return Feeds(dict(pack), described)


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
            _is_static(d) and d != got for d, got in zip(arg.shape, array.shape)
        ):
            raise AgentError(
                ErrorCode.BAD_INPUT,
                f"input '{name}' has shape {list(array.shape)}; the model expects "
                f"{declared_shape(arg.shape)}",
            )


def describe(feeds: Mapping[str, np.ndarray]) -> List[Dict[str, Any]]:
    return [{"name": k, "dtype": str(v.dtype), "shape": list(v.shape)} for k, v in feeds.items()]


def default_cap(meminfo_text: Optional[str], absolute: int = 1024**3) -> int:
    """The default input cap: a quarter of MemAvailable (else MemTotal), at most ``absolute``."""
    import re

    for key in ("MemAvailable", "MemTotal"):
        m = re.search(rf"^{key}:\s+(\d+)\s*kB", meminfo_text or "", re.MULTILINE)
        if m:
            return min(int(m.group(1)) * 1024 // 4, absolute)
    return min(256 * 1024 * 1024, absolute)


#: Words in onnxruntime's messages when a run failed on the values, not the shapes.
_VALUE_RANGE = ("by zero", "out of data bounds", "out of bounds", "out of range")
#: ... and when it failed on the shapes.
_SHAPE = ("dimension", "shape", "broadcast", "mismatch", "incompatible")


def explain_failure(error: AgentError, feeds: Feeds) -> AgentError:
    """Add to a failed run's error what the agent made up: synthesised values, default dims."""
    if error.code not in (ErrorCode.BAD_INPUT, ErrorCode.RUNTIME_ERROR):
        return error
    lower = error.message.lower()
    hints: List[str] = []
    code = error.code
    if feeds.synthesised and any(word in lower for word in _VALUE_RANGE):
        hints.append(_value_range_hint(feeds))
        code = ErrorCode.BAD_INPUT
    elif feeds.defaulted and any(word in lower for word in _SHAPE):
        given = ", ".join(feeds.defaulted)
        fix = " ".join(f"--dim {d}=INT" for d in feeds.defaulted)
        py = ", ".join(f"'{d}': INT" for d in feeds.defaulted)
        hints.append(
            f"the dims {given} were not given and set to 1; give the sizes the model needs "
            f"with {fix} (dims={{{py}}} in Python)"
        )
    if not hints:
        return error
    return AgentError(code, error.message + "; " + "; ".join(hints))


def _value_range_hint(feeds: Feeds) -> str:
    """Name the synthesised inputs likely at fault when a run failed on values.

    Indices (Gather, GatherElements, ScatterND, ...) and integer divisors are integers, and
    the session cannot say which graph input feeds the failing node: the integer inputs are
    the suspects, and the float ones are named only when there are no integer ones.
    """
    integers = [n for n in feeds.synthesised if np.issubdtype(feeds.arrays[n].dtype, np.integer)]
    suspects = integers or feeds.synthesised
    names = ", ".join(f"'{n}'" for n in suspects)
    if integers:
        what = f"integers {INT_LOW}..{INT_HIGH}"
    else:
        what = f"random floats, integers {INT_LOW}..{INT_HIGH}"
    many = len(suspects) > 1
    return (
        f"the input{'s' if many else ''} {names} {'were' if many else 'was'} synthesised "
        f"({what}); a model that needs values in a range (divisors, indices) needs real "
        "ones: send them with --inputs FILE.npz (inputs= in Python)"
    )
