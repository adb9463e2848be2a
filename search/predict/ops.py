"""The layers of a candidate as the lookup table knows them, and one-layer ONNX models.

A :class:`LayerOp` is one layer of a flat candidate as the exported graph runs it: its
type, its input shape (batch excluded) and its parameters, the ReLU that follows it
included. A block candidate's ops are ``search.blocks.TableOp``s (one per block, the
classifier, the resize to its resolution: ``search.blocks.table``). Both have a ``kind``
and a ``key()``; two candidates that share an op with the same input shape share its table
entry. Each op becomes a one-op ONNX model (:func:`op_onnx`; random weights: latency does
not depend on their values) built with the same nodes as the full model's export, so what
the table measures is what the full model runs. :func:`op_features` is an op's analytic
size (MACs, parameters, elements moved, nodes): what the learned correction reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TypeAlias

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..blocks.base import TableOp
from ..blocks.candidate import BlockCandidate
from ..blocks.table import candidate_table_ops, op_cost, op_model
from ..onnx_export import IR_VERSION, OPSET
from ..space import Candidate, Shape

#: op kinds: the candidate's layer kinds, ``classifier`` (the final linear layer, no ReLU),
#: and ``overhead`` (one ReLU on one number: the runtime's fixed cost per call)
KINDS = ("conv", "dwconv", "pool", "fc", "classifier", "overhead")


@dataclass(frozen=True)
class LayerOp:
    kind: str
    in_shape: Shape  #: (C, H, W), or (F,) after the flatten; an fc or classifier on a
    #: (C, H, W) input includes the flatten
    kernel: int = 0
    stride: int = 0
    width: int = 0  #: output channels (conv, dwconv) or units (fc, classifier)

    def key(self) -> str:
        """``conv_k3_s1_c16@1x8x8``: stable text, the table's key."""
        shape = "x".join(str(d) for d in self.in_shape)
        if self.kind in ("conv", "dwconv"):
            tag = "dw" if self.kind == "dwconv" else "conv"
            return f"{tag}_k{self.kernel}_s{self.stride}_c{self.width}@{shape}"
        if self.kind == "pool":
            return f"pool_k{self.kernel}_s{self.stride}@{shape}"
        if self.kind in ("fc", "classifier"):
            return f"{'fc' if self.kind == 'fc' else 'cls'}_u{self.width}@{shape}"
        return "overhead"


OVERHEAD = LayerOp("overhead", (1,))

#: what the table holds an entry for: a flat layer, or a block candidate's op
Op: TypeAlias = LayerOp | TableOp


def candidate_ops(candidate: Candidate) -> list[Op]:
    """One op per layer, then the classifier (a block candidate: its blocks' table ops, the
    resize first where it has one). Raises InvalidCandidate like ``shapes()``."""
    if isinstance(candidate, BlockCandidate):
        return list(candidate_table_ops(candidate))
    return list(flat_ops(candidate))


def flat_ops(candidate: Candidate) -> list[LayerOp]:
    """A flat candidate's :class:`LayerOp`: one per layer, then the classifier."""
    shapes = candidate.shapes()
    h, w, c = candidate.input_shape
    # what each layer receives: the previous layer's output (an fc or the classifier after
    # a feature map receives the map, and its op includes the flatten)
    inputs: list[Shape] = [(c, h, w)] + [out for _, out in shapes[:-1]]
    ops = [
        LayerOp(layer.kind, inputs[i], layer.kernel, layer.stride, layer.width)
        for i, layer in enumerate(candidate.layers)
    ]
    ops.append(LayerOp("classifier", inputs[-1], width=candidate.num_classes))
    return ops


def op_onnx(op: Op) -> bytes:
    """The one-op ONNX model the table measures for ``op``."""
    return layer_model(op) if isinstance(op, LayerOp) else op_model(op)


#: op_features' columns
OP_FEATURES = ("macs", "params", "moved", "nodes")


def op_features(op: Op) -> tuple[float, float, float, float]:
    """MACs, parameters, elements moved (the sum over the op's nodes of what is live while
    each runs: inputs and outputs) and ONNX nodes of ``op``; zeros for the overhead."""
    return _op_features(op)


@lru_cache(maxsize=65536)
def _op_features(op: Op) -> tuple[float, float, float, float]:
    if isinstance(op, TableOp):
        cost = op_cost(op)
        return (float(cost.macs), float(cost.params), float(sum(cost.live)), float(len(cost.live)))
    if op.kind == "overhead":
        return (0.0, 0.0, 0.0, 0.0)
    size_in = int(np.prod(op.in_shape))
    size_out = int(np.prod(_shape_out(op)))
    if op.kind == "pool":
        return (float(size_out * op.kernel**2), 0.0, float(size_in + size_out), 1.0)
    if op.kind in ("fc", "classifier"):
        macs = size_in * op.width
        flatten = len(op.in_shape) == 3
        relu = op.kind == "fc"
        moved = size_in + size_out + (2 * size_in if flatten else 0) + (2 * size_out if relu else 0)
        return (float(macs), float(macs + op.width), float(moved), float(1 + flatten + relu))
    cin = op.in_shape[0]
    _, h, w = _shape_out(op)
    if op.kind == "dwconv":
        dw = (cin, h, w)
        dw_size = int(np.prod(dw))
        macs = dw_size * op.kernel**2 + dw_size * op.width
        params = cin * op.kernel**2 + cin + cin * op.width + op.width
        moved = (size_in + dw_size) + 2 * dw_size + (dw_size + size_out) + 2 * size_out
        return (float(macs), float(params), float(moved), 4.0)
    macs = size_out * cin * op.kernel**2
    params = op.width * cin * op.kernel**2 + op.width
    return (float(macs), float(params), float(size_in + 3 * size_out), 2.0)


def _shape_out(op: LayerOp) -> Shape:
    if op.kind in ("fc", "classifier"):
        return (op.width,)
    if op.kind == "overhead":
        return op.in_shape
    c, h, w = op.in_shape
    if op.kind == "pool":
        return (c, (h - op.kernel) // op.stride + 1, (w - op.kernel) // op.stride + 1)
    pad = op.kernel // 2
    return (
        op.width,
        (h + 2 * pad - op.kernel) // op.stride + 1,
        (w + 2 * pad - op.kernel) // op.stride + 1,
    )


def layer_model(op: LayerOp, *, seed: int = 0) -> bytes:
    """A one-layer ONNX model of ``op``: input ``[1, *in_shape]`` float32."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def weight(name: str, *shape: int) -> str:
        inits.append(numpy_helper.from_array(rng.normal(0, 0.1, shape).astype(np.float32), name))
        return name

    def conv(x: str, out: str, cin: int, cout: int, k: int, s: int, group: int) -> None:
        n = len(nodes)
        nodes.append(
            helper.make_node(
                "Conv",
                [x, weight(f"w{n}", cout, cin // group, k, k), weight(f"b{n}", cout)],
                [f"c{n}"],
                kernel_shape=[k, k],
                strides=[s, s],
                pads=[k // 2] * 4,
                group=group,
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{n}"], [out]))

    def linear(x: str, out: str, features: int, units: int, relu: bool) -> None:
        if len(op.in_shape) == 3:
            nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
            x = "flat"
        gemm_out = "g" if relu else out
        nodes.append(
            helper.make_node(
                "Gemm", [x, weight("w", units, features), weight("b", units)], [gemm_out], transB=1
            )
        )
        if relu:
            nodes.append(helper.make_node("Relu", ["g"], [out]))

    if op.kind == "conv":
        conv("input", "output", op.in_shape[0], op.width, op.kernel, op.stride, 1)
    elif op.kind == "dwconv":
        cin = op.in_shape[0]
        conv("input", "dw", cin, cin, op.kernel, op.stride, cin)
        conv("dw", "output", cin, op.width, 1, 1, 1)
    elif op.kind == "pool":
        nodes.append(
            helper.make_node(
                "MaxPool",
                ["input"],
                ["output"],
                kernel_shape=[op.kernel, op.kernel],
                strides=[op.stride, op.stride],
            )
        )
    elif op.kind in ("fc", "classifier"):
        features = int(np.prod(op.in_shape))
        linear("input", "output", features, op.width, relu=op.kind == "fc")
    elif op.kind == "overhead":
        nodes.append(helper.make_node("Relu", ["input"], ["output"]))
    else:
        raise ValueError(f"unknown op kind {op.kind!r} (known: {', '.join(KINDS)})")
    graph = helper.make_graph(
        nodes,
        op.key(),
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, *op.in_shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, *_shape_out(op)])],
        initializer=inits,
        doc_string=op.key(),
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="hwnas-search-table",
        ir_version=IR_VERSION,
    )
    return bytes(model.SerializeToString())
