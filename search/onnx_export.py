"""Candidate + trained weights -> ONNX bytes, built node by node with ``onnx.helper``.

Why not ``torch.onnx.export``: the dynamo exporter takes ~3 s per small CNN on a 2-core host
(longer than training one), the TorchScript one is deprecated. Candidates come from a fixed
layer vocabulary, so each module maps to one ONNX node; tests/search/test_onnx_export.py
checks torch == onnxruntime for every layer type. Opset 13 / IR 7 so that the older
onnxruntime builds boards ship (JetPack, Raspberry Pi OS) load the models.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from .build import CandidateNet, FlatNet, build
from .errors import SearchError

OPSET = 13
IR_VERSION = 7
INPUT, OUTPUT = "input", "logits"


def to_onnx(net: CandidateNet) -> bytes:
    """The module's graph and current weights; input ``[1, C, H, W]`` float32 (NCHW). A
    block net's graph is written by its blocks (BatchNorm folded; blocks/candidate_net.py)."""
    from .blocks.candidate_net import BlockCandidateNet, OnnxBlockNet, block_onnx

    if isinstance(net, BlockCandidateNet):
        return block_onnx(net)
    if isinstance(net, OnnxBlockNet):  # loaded from the bytes themselves: those bytes
        return net.onnx
    if not isinstance(net, FlatNet):
        raise SearchError(f"no ONNX export for a {type(net).__name__}")
    h, w, c = net.candidate.input_shape
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    state = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    current = INPUT
    last = len(net.body) - 1
    for i, module in enumerate(net.body):
        name = f"body.{i}"
        out = OUTPUT if i == last else f"t{i}"
        if isinstance(module, nn.Conv2d):
            inputs = [current, f"{name}.weight", f"{name}.bias"]
            inits += [_init(f"{name}.weight", state), _init(f"{name}.bias", state)]
            k, s, p = module.kernel_size, module.stride, module.padding
            assert isinstance(p, tuple)
            nodes.append(
                helper.make_node(
                    "Conv",
                    inputs,
                    [out],
                    name=name,
                    kernel_shape=list(k),
                    strides=list(s),
                    pads=[p[0], p[1], p[0], p[1]],
                    group=module.groups,
                )
            )
        elif isinstance(module, nn.ReLU):
            nodes.append(helper.make_node("Relu", [current], [out], name=name))
        elif isinstance(module, nn.MaxPool2d):
            window, step = _pair(module.kernel_size), _pair(module.stride)
            nodes.append(
                helper.make_node(
                    "MaxPool", [current], [out], name=name, kernel_shape=window, strides=step
                )
            )
        elif isinstance(module, nn.Flatten):
            nodes.append(helper.make_node("Flatten", [current], [out], name=name, axis=1))
        elif isinstance(module, nn.Linear):
            inits += [_init(f"{name}.weight", state), _init(f"{name}.bias", state)]
            nodes.append(
                helper.make_node(
                    "Gemm",
                    [current, f"{name}.weight", f"{name}.bias"],
                    [out],
                    name=name,
                    transB=1,
                )
            )
        else:  # pragma: no cover - build.py makes only the modules above
            raise SearchError(f"no ONNX mapping for {type(module).__name__}")
        current = out
    graph = helper.make_graph(
        nodes,
        net.candidate.hash,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, c, h, w])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [1, net.candidate.num_classes])],
        initializer=inits,
        doc_string=net.candidate.encode(),
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="hwnas-search",
        ir_version=IR_VERSION,
    )
    model.metadata_props.append(
        onnx.StringStringEntryProto(key="hwnas.candidate", value=net.candidate.encode())
    )
    return bytes(model.SerializeToString())


def _init(name: str, state: Mapping[str, np.ndarray]) -> onnx.TensorProto:
    return numpy_helper.from_array(state[name], name)


def _pair(value: int | tuple[int, ...]) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


def from_onnx(data: bytes) -> CandidateNet:
    """The torch module back from bytes :func:`to_onnx` wrote (weights and candidate). A
    block candidate's model (BatchNorm folded away) comes back as an ``OnnxBlockNet``,
    which runs the bytes themselves: it evaluates and predicts, it does not train."""
    from .blocks.candidate import BlockCandidate
    from .space import Candidate

    model = onnx.load_from_string(data)
    meta = {p.key: p.value for p in model.metadata_props}
    if "hwnas.candidate" not in meta:
        raise SearchError("not a model the search exported (no hwnas.candidate metadata)")
    if isinstance(Candidate.decode(meta["hwnas.candidate"]), BlockCandidate):
        from .blocks.candidate_net import load_block_net

        return load_block_net(model, data)
    net = build(Candidate.decode(meta["hwnas.candidate"]))
    weights = {
        t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer
    }
    net.load_state_dict(weights)
    return net
