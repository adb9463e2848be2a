"""The direct ONNX export: for every layer type, onnxruntime's output equals torch's."""

from __future__ import annotations

import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from search.build import build
from search.onnx_export import IR_VERSION, OPSET, from_onnx, to_onnx
from search.space import Candidate

CASES = {
    "conv": "in9x7x3-conv_k3_s1_c8-out5",
    "conv strided, 5x5": "in9x7x3-conv_k5_s2_c4-out5",
    "conv 1x1": "in9x7x3-conv_k1_s1_c6-out5",
    "dwconv": "in9x7x3-dw_k3_s2_c8-out5",
    "pool": "in9x7x3-pool_k2_s2-out5",
    "pool 3/1": "in9x7x3-pool_k3_s1-out5",
    "fc": "in9x7x3-fc_u16-out5",
    "fc after fc": "in9x7x3-fc_u16-fc_u8-out5",
    "everything": "in16x16x2-conv_k3_s1_c8-dw_k5_s1_c12-pool_k2_s2-conv_k3_s2_c4-fc_u32-out10",
}


def _trained_like(c: Candidate) -> torch.nn.Module:
    """Weights that are not the initial ones (so biases and scales all matter)."""
    net = build(c, seed=1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return net


@pytest.mark.parametrize("name", list(CASES))
def test_onnx_output_equals_torch_output(name: str) -> None:
    c = Candidate.decode(CASES[name])
    net = _trained_like(c).eval()
    data = to_onnx(net)  # type: ignore[arg-type]
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == IR_VERSION
    assert model.opset_import[0].version == OPSET
    h, w, ch = c.input_shape
    x = np.random.default_rng(0).standard_normal((1, ch, h, w)).astype(np.float32)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert got.shape == (1, c.num_classes)
    assert np.abs(got - want).max() <= 1e-4


def test_the_torch_module_comes_back_from_the_onnx_bytes() -> None:
    c = Candidate.decode(CASES["everything"])
    net = _trained_like(c).eval()
    back = from_onnx(to_onnx(net)).eval()  # type: ignore[arg-type]
    assert back.candidate == c
    x = torch.randn(3, 2, 16, 16)
    with torch.no_grad():
        assert torch.equal(back(x), net(x))


def test_export_is_fast() -> None:
    """The reason for the direct export: far below the dynamo exporter's ~3 s a CNN."""
    net = build(Candidate.decode(CASES["everything"]))
    start = time.perf_counter()
    for _ in range(10):
        to_onnx(net)
    assert (time.perf_counter() - start) / 10 < 0.5  # ~2 ms here; generous for loaded CI
