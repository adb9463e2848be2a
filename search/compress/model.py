"""An ONNX classifier as compression sees it: its input, its classes, and accuracy in ORT.

Every accuracy compression reports is measured with onnxruntime on the very bytes that are
measured on the board (fp32 included), so the drops compare like with like.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from .errors import NotAClassifierError

#: ops whose arithmetic int8 speeds up; the layers sensitivity ranks and may keep in float
COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class ClassifierInfo:
    """What compression needs to know about a model, read from its graph and one run."""

    input_name: str
    sample_shape: tuple[int, ...]  #: one sample, without the batch axis, e.g. (1, 8, 8)
    batch_dim: int | str  #: 1 for the search's models; a name where the batch is dynamic
    num_classes: int
    candidate: str | None  #: the search's encoding (metadata ``hwnas.candidate``), if any

    def describe_shape(self) -> str:
        return "(N, " + ", ".join(str(d) for d in self.sample_shape) + ")"


def load_model(data: bytes, source: str = "the model") -> onnx.ModelProto:
    try:
        return onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX file
        raise NotAClassifierError(f"{source} is not an ONNX model: {exc}") from exc


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    shape = value.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def inspect_classifier(data: bytes, source: str = "the model") -> ClassifierInfo:
    """Check that ``data`` is a one-input float32 classifier with an ``[N, classes]`` output.

    The number of classes is read from one run on zeros, so models whose output shape is
    not written in the graph are handled too.
    """
    model = load_model(data, source)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise NotAClassifierError(f"{source} has {len(inputs)} inputs {names}; compress takes one")
    value = inputs[0]
    if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)
        raise NotAClassifierError(f"{source} takes {kind} input; compress takes float32 models")
    dims = _dims(value)
    if len(dims) < 2 or any(not isinstance(d, int) or d < 1 for d in dims[1:]):
        raise NotAClassifierError(
            f"{source}: input '{value.name}' has shape {dims}; compress needs a batch axis "
            "then fixed sizes"
        )
    if isinstance(dims[0], int) and dims[0] > 1:
        raise NotAClassifierError(
            f"{source}: input '{value.name}' has a fixed batch of {dims[0]}; compress takes "
            "models with batch 1 or a dynamic batch axis"
        )
    sample = tuple(int(d) for d in dims[1:])
    meta = {p.key: p.value for p in model.metadata_props}
    try:
        session = _session(data)
        out = session.run(None, {value.name: np.zeros((1, *sample), np.float32)})[0]
    except Exception as exc:  # onnxruntime's own errors have no common base class
        raise NotAClassifierError(f"{source} does not run in onnxruntime: {exc}") from exc
    shape = tuple(np.shape(out))
    if len(shape) != 2 or shape[0] != 1 or shape[1] < 2:
        raise NotAClassifierError(
            f"{source}: the output has shape {list(shape)} for one sample; compress takes "
            "classifiers whose output is [N, classes] (logits or probabilities)"
        )
    return ClassifierInfo(value.name, sample, dims[0], int(shape[1]), meta.get("hwnas.candidate"))


def _session(data: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the host is shared: one thread, as the board measures
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def with_dynamic_batch(data: bytes) -> bytes:
    """A copy whose first input and output axes are named ``N`` (shapes inside dropped), so
    an evaluation runs whole batches instead of one sample per call."""
    model = load_model(data)
    model = copy.deepcopy(model)
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = "N"
    del model.graph.value_info[:]
    return bytes(model.SerializeToString())


def _batch_dependent(data: bytes) -> bool:
    """Dynamic quantization computes its scales from the whole tensor: a batch would change
    the arithmetic the board runs at batch 1."""
    return any(n.op_type == "DynamicQuantizeLinear" for n in load_model(data).graph.node)


class OrtClassifier:
    """Predictions of one ONNX model in onnxruntime, batched where that changes nothing."""

    def __init__(self, data: bytes, info: ClassifierInfo, *, batch_size: int = 256) -> None:
        self.info, self.batch_size = info, batch_size
        self._session = _session(data)
        self._batched: ort.InferenceSession | None = None
        if not _batch_dependent(data):
            self._batched = self._try_batched(data)

    def _try_batched(self, data: bytes) -> ort.InferenceSession | None:
        """The dynamic-batch copy, if it gives the same logits as single runs (a model that
        reshapes to a fixed batch of 1 does not)."""
        try:
            session = _session(with_dynamic_batch(data))
            probe = np.random.default_rng(0).random((2, *self.info.sample_shape), np.float32)
            both = session.run(None, {self.info.input_name: probe})[0]
            one = [self._run_one(probe[i : i + 1]) for i in range(2)]
        except Exception:  # any failure: fall back to one sample per call
            return None
        same = np.shape(both) == (2, self.info.num_classes) and np.allclose(
            both, np.concatenate(one), rtol=1e-4, atol=1e-5
        )
        return session if same else None

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {self.info.input_name: x})[0])

    def logits(self, x: np.ndarray) -> np.ndarray:
        if self._batched is not None:
            parts = [
                np.asarray(
                    self._batched.run(None, {self.info.input_name: x[i : i + self.batch_size]})[0]
                )
                for i in range(0, len(x), self.batch_size)
            ]
        else:
            parts = [self._run_one(x[i : i + 1]) for i in range(len(x))]
        return np.concatenate(parts) if parts else np.zeros((0, self.info.num_classes))

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        """Top-1 accuracy in [0, 1]."""
        return float(np.mean(self.logits(x).argmax(axis=1) == y))


def accuracy_of(data: bytes, info: ClassifierInfo, x: np.ndarray, y: np.ndarray) -> float:
    return OrtClassifier(data, info).accuracy(x, y)
