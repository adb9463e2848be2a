"""A torch module to ONNX bytes, for benchmarking it on a board.

A user's own module goes through torch's exporter, ``torch.onnx.export(..., dynamo=True)``
(the default since torch 2.9; it needs ``onnxscript``). The search's candidates do not: they
are built of a few known layer kinds, and ``search/onnx_export.py`` writes their ONNX
directly (about 1 ms against about 3 s a model here). torch is imported only here, only when
asked, so the host side works without it.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

from .errors import HwnasError


def is_torch_module(obj: Any) -> bool:
    return any(
        c.__module__.startswith("torch.nn") and c.__name__ == "Module" for c in type(obj).__mro__
    )


def torch_to_onnx(module: Any, example_input: Any, opset: int = 18) -> bytes:
    """Export ``module`` traced with ``example_input`` (a tensor or a tuple of tensors)."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - only without torch installed
        raise HwnasError(
            "benchmarking a torch module needs torch and onnxscript: "
            "pip install 'hwnas-bench[search]'"
        ) from exc
    if example_input is None:
        raise HwnasError("a torch module needs an example input: hw_bench(module, example_input)")
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    module = module.eval()
    with tempfile.TemporaryDirectory(prefix="hwnas-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # torch's exporter warns about its own internals; nothing the user can act on
                warnings.simplefilter("ignore", FutureWarning)
                program = torch.onnx.export(
                    module, args, dynamo=True, opset_version=opset, verbose=False
                )
        except ImportError as exc:
            raise HwnasError(f"torch.onnx.export(dynamo=True) needs onnxscript: {exc}") from exc
        except Exception as exc:
            raise HwnasError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
        assert program is not None
        program.save(str(path))  # small models: weights inline, one file
        return path.read_bytes()
