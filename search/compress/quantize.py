"""int8 quantization with onnxruntime: static QDQ (calibrated) and dynamic (fc layers).

``quant_pre_process`` (shape inference and ORT's graph optimisation) runs first, as ORT's
guide asks. Static quantization keeps one calibration per method (ORT's calibration cache
where this ORT has it), so re-quantizing with other layers kept in float costs no new
calibration run.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from .data import CalibrationReader
from .errors import CompressionError
from .model import COMPUTE_OPS, ClassifierInfo, load_model

#: name (as settings, the CLI and compression.json spell it) -> ORT's method
METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
_HAS_CACHE = "calibration_cache_path" in inspect.signature(quantize_static).parameters


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ORT's quantizer logs a warning per call (pre-processing advice, opset notes)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a name: exclusions and sensitivity refer to nodes by name."""
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def preprocess(data: bytes) -> bytes:
    """``quant_pre_process`` on the model (nodes named first); metadata kept."""
    model = load_model(data)
    name_nodes(model)
    with tempfile.TemporaryDirectory(prefix="hwnas-quant-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "pre.onnx"
        onnx.save_model(model, src)
        try:
            with _quiet():
                quant_pre_process(str(src), str(dst))
        except Exception as exc:  # ORT's optimizer and shape inference raise their own types
            raise CompressionError(f"onnxruntime's quant_pre_process failed: {exc}") from exc
        out = onnx.load_model(dst)
    _keep_metadata(model, out)
    return bytes(out.SerializeToString())


def _keep_metadata(src: onnx.ModelProto, dst: onnx.ModelProto) -> None:
    have = {p.key for p in dst.metadata_props}
    for prop in src.metadata_props:
        if prop.key not in have:
            dst.metadata_props.append(prop)


def compute_nodes(data: bytes) -> list[str]:
    """Names of the Conv / Gemm / MatMul nodes, in graph order."""
    return [n.name for n in load_model(data).graph.node if n.op_type in COMPUTE_OPS]


def fc_share(data: bytes) -> float:
    """The share of multiply-accumulates in Gemm / MatMul (needs the shapes that
    ``preprocess`` infers); 0 when nothing is known."""
    model = load_model(data)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (*model.graph.value_info, *model.graph.output)
    }
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    fc = conv = 0
    for node in model.graph.node:
        w = weights.get(node.input[1]) if len(node.input) > 1 else None
        if w is None:
            continue
        if node.op_type in ("Gemm", "MatMul"):
            fc += int(np.prod(w))
        elif node.op_type == "Conv" and node.output[0] in shapes:
            out = shapes[node.output[0]]
            spatial = int(np.prod(out[2:])) if len(out) > 2 else 1
            conv += int(np.prod(w)) * max(spatial, 1)
    total = fc + conv
    return fc / total if total else 0.0


class StaticQuantizer:
    """QDQ int8 of one pre-processed model, calibrated on ``calibration`` samples."""

    def __init__(
        self,
        pre: bytes,
        info: ClassifierInfo,
        calibration: np.ndarray,
        *,
        per_channel: bool = True,
    ) -> None:
        self.pre, self.info, self.per_channel = pre, info, per_channel
        self.calibration = calibration
        self._tmp = tempfile.TemporaryDirectory(prefix="hwnas-quant-")
        self._dir = Path(self._tmp.name)
        (self._dir / "pre.onnx").write_bytes(pre)
        self.nodes = compute_nodes(pre)

    def quantize(
        self,
        method: str,
        *,
        exclude: Sequence[str] = (),
        only: Sequence[str] | None = None,
    ) -> bytes:
        """The int8 model; ``exclude`` nodes stay float, ``only`` quantizes just those."""
        out = self._dir / "q.onnx"
        cache = self._dir / f"calibration-{method}.json"
        kwargs: dict[str, object] = {}
        if _HAS_CACHE:
            kwargs["calibration_cache_path"] = str(cache)
        try:
            with _quiet():
                quantize_static(
                    str(self._dir / "pre.onnx"),
                    str(out),
                    CalibrationReader(self.calibration, self.info),
                    quant_format=QuantFormat.QDQ,
                    per_channel=self.per_channel,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=METHODS[method],
                    nodes_to_exclude=list(exclude),
                    nodes_to_quantize=list(only) if only is not None else None,
                    **kwargs,
                )
        except Exception as exc:  # ORT's quantizer raises plain Exceptions of many kinds
            raise CompressionError(f"static int8 quantization ({method}) failed: {exc}") from exc
        model = onnx.load_model(out)
        _keep_metadata(load_model(self.pre), model)
        return bytes(model.SerializeToString())

    def close(self) -> None:
        self._tmp.cleanup()


def gemm_to_matmul(model: onnx.ModelProto) -> onnx.ModelProto:
    """Gemm (alpha = beta = 1, no transA) as MatMul + Add: ORT's dynamic quantizer handles
    MatMul but not Gemm, and the search's fully-connected layers are Gemm."""
    inits = {t.name: t for t in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
        if (
            node.op_type != "Gemm"
            or attrs.get("transA", 0)
            or not plain
            or node.input[1] not in inits
        ):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        name = f"{node.input[1]}.matmul"
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), name))
        if len(node.input) > 2 and node.input[2]:
            mid = f"{node.output[0]}.matmul"
            nodes.append(helper.make_node("MatMul", [node.input[0], name], [mid], name=node.name))
            nodes.append(
                helper.make_node(
                    "Add", [mid, node.input[2]], list(node.output), name=f"{node.name}.bias"
                )
            )
        else:
            nodes.append(
                helper.make_node("MatMul", [node.input[0], name], list(node.output), name=node.name)
            )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return model


def quantize_dynamic_fc(pre: bytes) -> bytes:
    """Dynamic int8 of the fully-connected layers only (int8 weights, activations quantized
    at run time): ORT's dynamic convolutions (ConvInteger) measured several times slower
    than fp32 here, so convolutions stay float."""
    model = gemm_to_matmul(load_model(pre))
    with tempfile.TemporaryDirectory(prefix="hwnas-quant-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "q.onnx"
        onnx.save_model(model, src)
        try:
            with _quiet():
                quantize_dynamic(
                    str(src), str(dst), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8
                )
        except Exception as exc:  # ORT's quantizer raises plain Exceptions of many kinds
            raise CompressionError(f"dynamic int8 quantization failed: {exc}") from exc
        out = onnx.load_model(dst)
    _keep_metadata(model, out)
    return bytes(out.SerializeToString())
