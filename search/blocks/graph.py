"""A small ONNX graph builder, and the emission of the shared torch parts into it.

Opset 13 / IR 7, as search/onnx_export.py, so the older onnxruntime builds that boards ship
load the models. BatchNorm is folded into the conv before it (eval-mode statistics), so no
BatchNormalization node is written. Activations use opset-13 operators only: Relu; relu6 as
Clip with its bounds as inputs; hswish as ``x * HardSigmoid(x, 1/6, 0.5)`` (HardSwish is
opset 14, too new for those runtimes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from ..errors import SearchError
from .layers import ConvBN, Dense, SqueezeExcite

OPSET = 13
IR_VERSION = 7
# torch's Hardsigmoid: relu6(x + 3) / 6
HARD_SIGMOID: dict[str, Any] = {"alpha": 1.0 / 6.0, "beta": 0.5}


class GraphBuilder:
    """Nodes and initializers with unique names. ``scope`` prefixes the names made next
    (``blocks.3``), so a block's nodes say where they come from."""

    def __init__(self, reserved: Sequence[str] = ()) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.scope = ""
        self._taken: set[str] = set(reserved)
        self._constants: dict[float, str] = {}

    def fresh(self, hint: str) -> str:
        """A name nothing in the graph has yet, from ``scope.hint``."""
        base = f"{self.scope}.{hint}" if self.scope else hint
        name, n = base, 1
        while name in self._taken:
            name, n = f"{base}_{n}", n + 1
        self._taken.add(name)
        return name

    def initializer(self, array: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def constant(self, value: float) -> str:
        """A float32 scalar initializer, one per value for the whole graph."""
        if value not in self._constants:
            scope, self.scope = self.scope, ""
            self._constants[value] = self.initializer(
                np.array(value, dtype=np.float32), f"const_{value:g}"
            )
            self.scope = scope
        return self._constants[value]

    def node(
        self, op: str, inputs: Sequence[str], *, hint: str, output: str | None = None, **attrs: Any
    ) -> str:
        """Append a node; its output's name (``output`` when given, else a fresh one)."""
        out = output if output is not None else self.fresh(hint)
        if output is not None:
            self._taken.add(output)
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def model(
        self,
        *,
        name: str,
        inputs: Sequence[tuple[str, Sequence[int]]],
        outputs: Sequence[tuple[str, Sequence[int]]],
        doc: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in outputs],
            initializer=self.initializers,
            doc_string=doc,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="hwnas-search",
            ir_version=IR_VERSION,
        )
        for key, value in (metadata or {}).items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
        return model


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float64)


def fold_batch_norm(
    conv: nn.Conv1d | nn.Conv2d, bn: nn.BatchNorm1d | nn.BatchNorm2d
) -> tuple[np.ndarray, np.ndarray]:
    """The conv's weight and bias with BN's eval-mode affine map folded in (float32,
    computed in float64): ``w * s`` and ``(b - mean) * s + beta``, ``s = g / sqrt(var + eps)``."""
    if bn.running_mean is None or bn.running_var is None:
        raise SearchError("BatchNorm without running statistics cannot be folded")
    scale = np.ones(bn.num_features) if bn.weight is None else _array(bn.weight)
    shift = np.zeros(bn.num_features) if bn.bias is None else _array(bn.bias)
    scale = scale / np.sqrt(_array(bn.running_var) + bn.eps)
    bias = np.zeros(bn.num_features) if conv.bias is None else _array(conv.bias)
    weight = _array(conv.weight) * scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
    bias = (bias - _array(bn.running_mean)) * scale + shift
    return weight.astype(np.float32), bias.astype(np.float32)


def emit_activation(graph: GraphBuilder, x: str, act: str | None) -> str:
    if act is None:
        return x
    if act == "relu":
        return graph.node("Relu", [x], hint="relu")
    if act == "relu6":
        bounds = [graph.constant(0.0), graph.constant(6.0)]
        return graph.node("Clip", [x, *bounds], hint="relu6")
    if act == "hswish":
        gate = graph.node("HardSigmoid", [x], hint="hsigmoid", **HARD_SIGMOID)
        return graph.node("Mul", [x, gate], hint="hswish")
    raise SearchError(f"no ONNX form for the activation '{act}'")


def emit_conv(
    graph: GraphBuilder,
    x: str,
    conv: nn.Conv1d | nn.Conv2d,
    weight: np.ndarray,
    bias: np.ndarray,
    hint: str = "conv",
) -> str:
    """One Conv node over 1 or 2 spatial axes, with the given (folded) weight and bias."""
    padding = conv.padding
    if isinstance(padding, str):
        raise SearchError(f"conv padding '{padding}' has no fixed ONNX form here")
    inputs = [
        x,
        graph.initializer(weight, f"{hint}.weight"),
        graph.initializer(bias, f"{hint}.bias"),
    ]
    return graph.node(
        "Conv",
        inputs,
        hint=hint,
        kernel_shape=list(conv.kernel_size),
        strides=list(conv.stride),
        pads=[*padding, *padding],  # begins of every axis, then ends
        dilations=list(conv.dilation),
        group=conv.groups,
    )


def emit_plain_conv(graph: GraphBuilder, x: str, conv: nn.Conv1d | nn.Conv2d, hint: str) -> str:
    """A conv that no BN follows: its own weight and bias."""
    if conv.bias is None:
        raise SearchError("a conv without BatchNorm needs its own bias here")
    weight = _array(conv.weight).astype(np.float32)
    return emit_conv(graph, x, conv, weight, _array(conv.bias).astype(np.float32), hint)


def emit_conv_bn(graph: GraphBuilder, x: str, module: ConvBN, hint: str = "conv") -> str:
    """conv-BN-act as one folded Conv and the activation's node(s)."""
    weight, bias = fold_batch_norm(module.conv, module.bn)
    out = emit_conv(graph, x, module.conv, weight, bias, hint)
    return emit_activation(graph, out, module.act_name)


def emit_squeeze_excite(graph: GraphBuilder, x: str, module: SqueezeExcite) -> str:
    pooled = graph.node("GlobalAveragePool", [x], hint="se.pool")
    reduced = emit_plain_conv(graph, pooled, module.reduce, "se.reduce")
    reduced = emit_activation(graph, reduced, "relu")
    expanded = emit_plain_conv(graph, reduced, module.expand, "se.expand")
    gate = graph.node("HardSigmoid", [expanded], hint="se.gate", **HARD_SIGMOID)
    return graph.node("Mul", [x, gate], hint="se.scale")


def emit_flatten(graph: GraphBuilder, x: str) -> str:
    return graph.node("Flatten", [x], hint="flatten", axis=1)


def emit_linear(
    graph: GraphBuilder, x: str, linear: nn.Linear, *, hint: str = "fc", output: str | None = None
) -> str:
    """Gemm with the weight as torch keeps it (out, in): ``transB``."""
    if linear.bias is None:
        raise SearchError("a linear layer needs its bias here")
    weight = graph.initializer(_array(linear.weight).astype(np.float32), f"{hint}.weight")
    bias = graph.initializer(_array(linear.bias).astype(np.float32), f"{hint}.bias")
    return graph.node("Gemm", [x, weight, bias], hint=hint, output=output, transB=1)


def emit_dense(graph: GraphBuilder, x: str, module: Dense) -> str:
    if module.flatten:
        x = emit_flatten(graph, x)
    return emit_activation(graph, emit_linear(graph, x, module.linear), module.act_name)
