"""Analytic cost vs hand-computed values and vs the exported ONNX graph; pruning limits."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper, shape_inference

from search.build import build
from search.cost import Cost, Limits, cost
from search.onnx_export import to_onnx
from search.space import Candidate, InvalidCandidate


def test_cost_matches_hand_computed_values() -> None:
    c = Candidate.decode("in8x8x1-conv_k3_s1_c8-dw_k3_s2_c16-pool_k2_s2-fc_u32-out10")
    # conv 1->8 k3: 1*8*9 + 8 = 80 params; MACs 8*8*8 * 1*9 = 4608
    # dw 8 k3 s2 -> 4x4: 8*9 + 8 = 80; MACs 8*16*9 = 1152
    # pw 8->16 on 4x4: 8*16 + 16 = 144; MACs 16*16*8 = 2048
    # pool: 0; fc 64->32: 64*32 + 32 = 2080, MACs 2048; classifier 32->10: 330, MACs 320
    assert cost(c).params == 80 + 80 + 144 + 2080 + 330
    assert cost(c).flops == 2 * (4608 + 1152 + 2048 + 2048 + 320)
    # tensors (elements): input 64, conv 512, relu 512, dw 128, relu 128, pw 256, relu 256,
    # pool 64, flatten 64, fc 32, relu 32, logits 10: largest neighbouring pair 512 + 512
    assert cost(c).peak_activation_bytes == (512 + 512) * 4
    assert cost(c).memory_mb == pytest.approx((2714 * 4 + 4096) / 2**20)


def test_cost_of_an_invalid_candidate_raises_the_counted_error() -> None:
    with pytest.raises(InvalidCandidate):
        cost(Candidate.decode("in2x2x1-pool_k3_s1-out2"))


@pytest.mark.parametrize(
    "encoding",
    [
        "in8x8x1-conv_k3_s1_c8-dw_k3_s2_c16-pool_k2_s2-fc_u32-out10",
        "in32x32x3-conv_k5_s2_c16-pool_k2_s2-conv_k1_s1_c4-fc_u64-fc_u128-out7",
        "in12x10x2-dw_k5_s1_c3-out3",
        "in6x6x1-fc_u16-out2",
    ],
)
def test_cost_matches_the_onnx_graph(encoding: str) -> None:
    c = Candidate.decode(encoding)
    model = shape_inference.infer_shapes(onnx.load_from_string(to_onnx(build(c))))
    graph = model.graph
    params = sum(int(np.prod(numpy_helper.to_array(t).shape)) for t in graph.initializer)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*graph.input, *graph.value_info, *graph.output]
    }
    inits = {t.name: numpy_helper.to_array(t).shape for t in graph.initializer}
    macs = 0
    peak = 0
    for node in graph.node:
        out = shapes[node.output[0]]
        peak = max(peak, int(np.prod(shapes[node.input[0]])) + int(np.prod(out)))
        if node.op_type == "Conv":
            w = inits[node.input[1]]  # (out, in/groups, kh, kw)
            macs += int(np.prod(out)) * w[1] * w[2] * w[3]
        elif node.op_type == "Gemm":
            macs += int(np.prod(inits[node.input[1]]))
    got = cost(c)
    assert got.params == params
    assert got.flops == 2 * macs
    assert got.peak_activation_bytes == 4 * peak


def test_limits_name_the_first_limit_broken() -> None:
    c = Cost(params=1000, flops=50_000, peak_activation_bytes=2**20)
    assert Limits().violated(c) is None
    assert Limits(flops=10_000).violated(c) == "flops"
    assert Limits(memory_mb=0.5).violated(c) == "memory"
    assert Limits(params=999).violated(c) == "params"
    limits = Limits(profile_memory_mb=1.0, profile="tiny-board", memory_mb=0.5)
    assert limits.violated(c) == "profile_memory"
    assert "tiny-board profile has 1 MB" in limits.describe("profile_memory", c)
