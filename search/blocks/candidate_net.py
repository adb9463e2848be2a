"""A block candidate as a torch module and as ONNX bytes, and the module back from them.

``BlockCandidateNet`` is ``BlockNet`` after a nearest-neighbour resize to the candidate's
resolution (none when it has none, or the data already have it): the module and the ONNX
model both take the data at their own size, so training, evaluation, the card and the board
all feed the same tensors; the ONNX graph starts with the matching ``Resize`` node
(``asymmetric`` / ``floor``, torch's ``nearest``). BatchNorm is folded into the convs on
export (``net.to_model``), so the board runs no BatchNormalization node.

The folded graph cannot be loaded back into BatchNorm layers, so :func:`load_block_net`
gives an :class:`OnnxBlockNet`: a module that runs the very bytes that were measured with
onnxruntime (evaluation and prediction only, no gradients).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from ..errors import SearchError
from ..training.net import CandidateNet
from .candidate import BlockCandidate
from .net import INPUT, BlockNet, to_model

RESIZED = "input_resized"


def needs_resize(candidate: BlockCandidate) -> bool:
    return candidate.net_shape != candidate.data_shape


class BlockCandidateNet(CandidateNet):
    """``forward`` takes N x C x L or N x C x H x W float32 at the data's size; logits."""

    def __init__(self, candidate: BlockCandidate, *, seed: int = 0) -> None:
        super().__init__()
        self.candidate = candidate
        self.block_candidate = candidate
        self.net = BlockNet(candidate.blocks, candidate.net_shape, candidate.num_classes, seed=seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(self.block_candidate.net_shape[1:])
        if tuple(x.shape[2:]) != size:
            x = nn.functional.interpolate(x, size=size, mode="nearest")
        out: torch.Tensor = self.net(x)
        return out


def block_model(net: BlockCandidateNet) -> onnx.ModelProto:
    """The net's ONNX model (BatchNorm folded), taking the data at their own size."""
    candidate = net.block_candidate
    model = to_model(net.net)
    if needs_resize(candidate):
        graph = model.graph
        for node in graph.node:
            node.input[:] = [RESIZED if name == INPUT else name for name in node.input]
        sizes = np.array([1, *candidate.net_shape], dtype=np.int64)
        graph.initializer.append(onnx.numpy_helper.from_array(sizes, "resize_sizes"))
        resize = helper.make_node(
            "Resize",
            [INPUT, "", "", "resize_sizes"],
            [RESIZED],
            name="resize",
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
        graph.node.insert(0, resize)
        del graph.input[:]
        graph.input.append(
            helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, *candidate.data_shape])
        )
    model.metadata_props.append(
        onnx.StringStringEntryProto(key="hwnas.candidate", value=candidate.encode())
    )
    return model


def block_onnx(net: BlockCandidateNet) -> bytes:
    return bytes(block_model(net).SerializeToString())


class OnnxBlockNet(CandidateNet):
    """The exported model as a module: ``forward`` runs the ONNX bytes sample by sample
    (the graph's batch is 1, as the board runs it) with onnxruntime."""

    def __init__(self, candidate: BlockCandidate, data: bytes) -> None:
        super().__init__()
        import onnxruntime as ort

        self.candidate = candidate
        self.block_candidate = candidate
        self.onnx = data
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self._session: Any = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = x.detach().cpu().numpy().astype(np.float32)
        rows = [self._session.run(None, {INPUT: arr[i : i + 1]})[0] for i in range(len(arr))]
        if not rows:
            return torch.zeros((0, self.block_candidate.num_classes))
        return torch.from_numpy(np.concatenate(rows, axis=0))


def load_block_net(model: onnx.ModelProto, data: bytes) -> OnnxBlockNet:
    meta = {p.key: p.value for p in model.metadata_props}
    candidate = BlockCandidate.decode(meta["hwnas.candidate"])
    if not isinstance(candidate, BlockCandidate):  # pragma: no cover - decode's own type
        raise SearchError("not a block candidate's model")
    return OnnxBlockNet(candidate, data)
