"""The block kinds (search/blocks/): tokens, shapes, analytic cost, torch modules, and the
ONNX graphs the blocks write, checked against torch, onnxruntime and the graph itself."""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own spelling
from onnx import numpy_helper
from torch import nn

import hw_targets
from hw_targets import PluginError, hookimpl
from search.blocks import (
    KINDS,
    Block,
    BlockNet,
    Shape,
    chain_cost,
    decode,
    decode_blocks,
    encode,
    infer_shapes,
    kind_of,
    register,
    to_onnx,
    unregister,
)
from search.blocks.graph import IR_VERSION, OPSET
from search.blocks.layers import Residual, SqueezeExcite
from search.blocks.references import mobilenet_v2, resnet8
from search.errors import SpaceError
from search.space import InvalidCandidate

from .blocks_support import ClampKind, run_onnx, with_moved_statistics

IMAGE: Shape = (4, 9, 7)  # odd sizes, so strides and windows round
SIGNAL: Shape = (4, 17)  # 1-D: (C, L)
CLASSES = 5
#: every kind, several gene values; each is checked on the image and on the signal
TOKENS = [
    "conv_k3_s1_c8_relu",
    "conv_k5_s2_c6_relu6",
    "conv_k1_s1_c4_hswish",
    "conv_k7_s3_c5_relu",
    "dw_k3_s2_c8_relu6",
    "dw_k5_s1_c4_hswish",
    "dw_k7_s1_c6_relu",
    "mb_e1_k3_s1_c4_relu6",
    "mb_e6_k5_s2_c8_se_hswish",
    "mb_e4_k7_s1_c4_se_relu6",
    "mb_e3_k3_s1_c6_relu",
    "mb_e1_k5_s2_c4_se_relu",
    "res_s1_c4_relu",
    "res_s1_c8_relu6",
    "res_s2_c4_hswish",
    "res_s2_c8_relu",
    "pool_max_k2_s2",
    "pool_avg_k3_s1",
    "pool_avg_k2_s2",
    "pool_max_k3_s2",
    "gap",
    "fc_u16_relu",
    "fc_u8_hswish",
    "fc_u5_relu6",
    "skip",
    # chains: fc after fc, after gap; a conv on a 1x1 map; a skip between others
    "fc_u16_relu-fc_u8_hswish",
    "gap-fc_u8_relu6",
    "gap-conv_k3_s1_c4_relu",
    "conv_k3_s2_c6_relu-skip-mb_e6_k3_s1_c6_se_hswish-res_s2_c8_relu-gap",
]
CASES = [
    pytest.param(t, s, id=f"{t}@{'x'.join(map(str, s))}") for t in TOKENS for s in (IMAGE, SIGNAL)
]
OPS_OF_OPSET_13 = {
    "Conv",
    "Relu",
    "Clip",
    "HardSigmoid",
    "Mul",
    "Add",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Flatten",
    "Gemm",
}


@functools.cache
def trained(encoding: str, shape: Shape, classes: int = CLASSES) -> BlockNet:
    """The net after a few SGD steps on random data (train mode: BatchNorm's statistics and
    affine parameters move off their initial values), then in eval mode."""
    net = BlockNet(decode_blocks(encoding), shape, classes, seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(4):
        x = torch.randn(8, *shape, generator=gen) * 2 + 0.5
        y = torch.randint(0, classes, (8,), generator=gen)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@functools.cache
def exported(encoding: str, shape: Shape) -> bytes:
    return to_onnx(trained(encoding, shape))


def folded_torch_params(net: nn.Module) -> int:
    """torch's parameter count with BatchNorm folded: each BN's scale and shift become the
    bias of the (bias-less) conv before it, so one of its two vectors remains."""
    bns = [m for m in net.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    return sum(p.numel() for p in net.parameters()) - sum(bn.num_features for bn in bns)


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _sizes(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    infos = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return {i.name: math.prod(d.dim_value for d in i.type.tensor_type.shape.dim) for i in infos}


def graph_live(model: onnx.ModelProto) -> tuple[int, ...]:
    """Elements live while each node runs, from the graph alone: every activation tensor
    from the node that writes it (the input: from the start) to its last reader."""
    consts, sizes = set(_initializers(model)), _sizes(model)
    nodes = model.graph.node
    born = {model.graph.input[0].name: -1}
    last: dict[str, int] = {model.graph.input[0].name: -1}
    for i, node in enumerate(nodes):
        for t in node.input:
            if t not in consts:
                last[t] = i
        for t in node.output:
            born[t] = last[t] = i
    for out in model.graph.output:
        last[out.name] = len(nodes)
    return tuple(sum(sizes[t] for t in born if born[t] <= i <= last[t]) for i in range(len(nodes)))


def graph_macs(model: onnx.ModelProto) -> int:
    weights, sizes, macs = _initializers(model), _sizes(model), 0
    for node in model.graph.node:
        if node.op_type == "Conv":  # each output element: (cin / groups) x kernel MACs
            macs += sizes[node.output[0]] * math.prod(weights[node.input[1]].shape[1:])
        elif node.op_type == "Gemm":
            macs += weights[node.input[1]].size
    return macs


def graph_params(model: onnx.ModelProto) -> int:
    weights = _initializers(model)
    return sum(
        weights[t].size
        for node in model.graph.node
        if node.op_type in ("Conv", "Gemm")
        for t in node.input[1:]
    )


# --- tokens -------------------------------------------------------------------------------


@pytest.mark.parametrize("token", sorted({t for e in TOKENS for t in e.split("-")}))
def test_every_token_round_trips(token: str) -> None:
    block = decode(token)
    assert encode(block) == token
    assert kind_of(block).make(**block.values) == block
    assert hash(block) == hash(decode(token))  # frozen and hashable: usable as a key


def test_the_documented_examples_decode() -> None:
    examples = {
        "conv_k3_s1_c16_relu": ("conv", {"kernel": 3, "stride": 1, "width": 16, "act": "relu"}),
        "dw_k3_s2_c32_relu6": ("dwconv", {"kernel": 3, "stride": 2, "width": 32, "act": "relu6"}),
        "mb_e6_k5_s2_c24_se_hswish": (
            "mbconv",
            {"expansion": 6, "kernel": 5, "stride": 2, "width": 24, "se": True, "act": "hswish"},
        ),
        "mb_e6_k5_s2_c24_hswish": (
            "mbconv",
            {"expansion": 6, "kernel": 5, "stride": 2, "width": 24, "se": False, "act": "hswish"},
        ),
        "res_s2_c32_relu": ("res", {"stride": 2, "width": 32, "act": "relu"}),
        "pool_max_k2_s2": ("pool", {"mode": "max", "kernel": 2, "stride": 2}),
        "gap": ("gap", {}),
        "fc_u64_relu": ("fc", {"units": 64, "act": "relu"}),
        "skip": ("skip", {}),
    }
    for token, (kind, values) in examples.items():
        assert decode(token) == Block(kind, tuple(values.items())), token


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("conv_k3_s1_c16", "expected conv_k<1|3|5|7>_s<"),  # no activation
        ("conv_k3_s1_c16_relu_x", "expected conv_"),  # a part too many
        ("conv_s1_k3_c16_relu", "expected conv_"),  # out of order
        ("conv_k03_s1_c16_relu", "expected conv_"),  # a leading zero
        ("conv_k4_s1_c16_relu", "kernel must be one of 1|3|5|7, not 4"),
        ("conv_k3_s1_c0_relu", "width must be one of 1..65536, not 0"),
        ("mb_e2_k3_s1_c16_relu", "expansion must be one of 1|3|4|6, not 2"),
        ("mb_e6_k3_s1_c16_relu_se", "expected mb_"),  # the flag after the activation
        ("mb_e6_k9_s1_c16_relu", "kernel must be one of 3|5|7, not 9"),
        ("dw_k3_s1_c8_gelu", "expected dw_"),
        ("pool_min_k2_s2", "expected pool_<max|avg>"),
        ("gap_k2", "expected gap"),
        ("skip_", "expected skip"),
        ("ir_r1_k3_s1_e6_c16", "unknown block 'ir_r1_k3_s1_e6_c16' (known prefixes: conv, dw"),
        ("", "unknown block ''"),
    ],
)
def test_bad_tokens_are_refused_by_name(token: str, message: str) -> None:
    with pytest.raises(SpaceError, match="block") as info:
        decode(token)
    assert message in str(info.value)
    assert f"'{token}'" in str(info.value) or "must be one of" in str(info.value)


def test_make_checks_every_gene() -> None:
    conv = KINDS["conv"]
    with pytest.raises(SpaceError, match="needs its gene 'act'"):
        conv.make(kernel=3, stride=1, width=8)
    with pytest.raises(SpaceError, match="conv has no gene colour"):
        conv.make(kernel=3, stride=1, width=8, act="relu", colour=1)
    with pytest.raises(SpaceError, match="stride must be one of"):
        conv.make(kernel=3, stride=True, width=8, act="relu")
    with pytest.raises(SpaceError, match="se must be true or false"):
        KINDS["mbconv"].make(expansion=6, kernel=3, stride=1, width=8, se=1, act="relu")


# --- shapes, params, the graph ------------------------------------------------------------


@pytest.mark.parametrize(("encoding", "shape"), CASES)
def test_shapes_and_params_match_torch(encoding: str, shape: Shape) -> None:
    blocks = decode_blocks(encoding)
    net = trained(encoding, shape)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        for module, (shape_in, shape_out) in zip(
            net.blocks, infer_shapes(blocks, shape), strict=True
        ):
            assert tuple(x.shape[1:]) == shape_in
            x = module(x)
            assert tuple(x.shape[1:]) == shape_out
    assert chain_cost(blocks, shape, CLASSES).params == folded_torch_params(net)


@pytest.mark.parametrize(("encoding", "shape"), CASES)
def test_onnx_equals_torch_with_batch_norm_folded(encoding: str, shape: Shape) -> None:
    net, data = trained(encoding, shape), exported(encoding, shape)
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    assert (model.ir_version, model.opset_import[0].version) == (IR_VERSION, OPSET)
    ops = {node.op_type for node in model.graph.node}
    assert "BatchNormalization" not in ops
    assert ops <= OPS_OF_OPSET_13
    x = (np.random.default_rng(1).standard_normal((1, *shape)) * 2).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = run_onnx(data, x)
    assert got.shape == (1, CLASSES)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)  # absolute: max |diff| <= 1e-4


@pytest.mark.parametrize(("encoding", "shape"), CASES)
def test_analytic_cost_is_the_graphs(encoding: str, shape: Shape) -> None:
    model = onnx.load_from_string(exported(encoding, shape))
    cost = chain_cost(decode_blocks(encoding), shape, CLASSES)
    assert cost.params == graph_params(model)
    assert cost.macs == graph_macs(model)
    assert cost.flops == 2 * cost.macs
    assert cost.live == graph_live(model)  # node by node, saved residual inputs included
    assert cost.peak_activation_bytes == 4 * max(graph_live(model))


def test_a_residual_input_counts_while_it_waits() -> None:
    # mbconv 4 -> 24 (e6) -> 4 on 9x7, residual: the 4x9x7 input is live at every node
    block, n_in = decode("mb_e6_k3_s1_c4_relu"), 4 * 9 * 7
    hidden = 24 * 9 * 7
    live = kind_of(block).cost(block, IMAGE).live
    # expand conv, relu, dw conv, relu, project conv, add
    assert live == (
        n_in + hidden,
        n_in + 2 * hidden,
        n_in + 2 * hidden,
        n_in + 2 * hidden,
        n_in + hidden + n_in,
        n_in + n_in + n_in,
    )


@pytest.mark.parametrize(
    ("token", "channels", "residual"),
    [
        ("mb_e1_k3_s1_c4_relu6", 4, True),
        ("mb_e4_k7_s1_c4_se_relu6", 4, True),
        ("mb_e6_k3_s1_c8_relu", 4, False),  # widths differ
        ("mb_e6_k3_s2_c4_relu", 4, False),  # strided
        ("mb_e3_k5_s2_c8_se_hswish", 4, False),
    ],
)
@pytest.mark.parametrize("spatial", [(9, 7), (17,)], ids=["2d", "1d"])
def test_mbconv_adds_its_input_exactly_when_stride_1_and_widths_match(
    token: str, channels: int, residual: bool, spatial: tuple[int, ...]
) -> None:
    shape = (channels, *spatial)
    model = onnx.load_from_string(exported(token, shape))
    assert [n.op_type for n in model.graph.node].count("Add") == int(residual)
    assert isinstance(trained(token, shape).blocks[0], Residual) == residual


@pytest.mark.parametrize(
    ("token", "channels", "squeeze"),
    [
        ("mb_e6_k3_s1_c4_se_relu", 4, 8),  # hidden 24: 24 // 4 = 6, rounded up to 8
        ("mb_e6_k3_s1_c16_se_relu", 16, 24),  # hidden 96: 24
        ("mb_e4_k5_s2_c8_se_hswish", 10, 16),  # hidden 40: 10; 8 would be > 10% below: 16
    ],
)
def test_squeeze_excite_reduces_as_mobilenet_v3(token: str, channels: int, squeeze: int) -> None:
    net = BlockNet([token], (channels, 9, 7), CLASSES)
    (se,) = [m for m in net.modules() if isinstance(m, SqueezeExcite)]
    assert se.reduce.out_channels == squeeze


@pytest.mark.parametrize(
    ("token", "channels", "projection"),
    [
        ("res_s1_c4_relu", 4, False),
        ("res_s1_c8_relu", 4, True),  # widths differ
        ("res_s2_c4_relu", 4, True),  # strided
        ("res_s2_c8_hswish", 4, True),
    ],
)
@pytest.mark.parametrize("spatial", [(9, 7), (17,)], ids=["2d", "1d"])
def test_res_projects_exactly_when_needed(
    token: str, channels: int, projection: bool, spatial: tuple[int, ...]
) -> None:
    shape = (channels, *spatial)
    model = onnx.load_from_string(exported(token, shape))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 2 + int(projection)
    assert ops.count("Add") == 1
    block = trained(token, shape).blocks[0]
    assert isinstance(block, Residual)
    assert (block.shortcut is not None) == projection


@pytest.mark.parametrize(
    ("encoding", "shape", "index"),
    [
        ("pool_max_k5_s1", (2, 3, 3), 0),  # window larger than the map
        ("conv_k3_s2_c4_relu-pool_avg_k4_s1", (2, 6), 1),
        ("fc_u8_relu-conv_k3_s1_c4_relu", (2, 5, 5), 1),  # a feature block after a flatten
        ("gap-fc_u8_relu-gap", (2, 5), 2),
    ],
)
def test_shapes_that_do_not_work_are_invalid_candidates(
    encoding: str, shape: Shape, index: int
) -> None:
    with pytest.raises(InvalidCandidate, match=rf"block {index} \(") as info:
        infer_shapes(decode_blocks(encoding), shape)
    assert info.value.layer == index
    with pytest.raises(InvalidCandidate):
        BlockNet(decode_blocks(encoding), shape, CLASSES)


@pytest.mark.parametrize("shape", [(3,), (1, 2, 3, 4), (3, 0, 4), (3, 4.0), "3x4"])
def test_input_shapes_other_than_1d_or_2d_are_refused(shape: Any) -> None:
    with pytest.raises(SpaceError, match="input_shape must be"):
        BlockNet(["gap"], shape, CLASSES)


def test_a_net_over_the_memory_cap_is_refused_before_allocating() -> None:
    with pytest.raises(SpaceError, match="MB a candidate may need"):
        BlockNet(["conv_k7_s1_c65536_relu", "conv_k7_s1_c65536_relu"], (3, 8, 8), CLASSES)


def test_the_blocks_decode_and_count_without_torch_or_onnx() -> None:
    code = (
        "import sys, search.blocks as b\n"
        "blocks = b.decode_blocks('mb_e6_k5_s2_c24_se_hswish-res_s1_c24_relu-gap')\n"
        "b.chain_cost(blocks, (3, 32, 32), 10)\n"
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- a kind from outside the package ------------------------------------------------------


class NamedKind(ClampKind):
    def __init__(self, name: str, prefix: str) -> None:
        self.name, self.prefix = name, prefix  # type: ignore[misc]


class BlocksPlugin:
    def __init__(self, *kinds: Any) -> None:
        self.kinds = kinds

    @hookimpl
    def hwnas_search_blocks(self) -> list[Any]:
        return list(self.kinds)


@pytest.fixture
def plugin_manager() -> Iterator[Any]:
    """hw_targets' manager; every plugin a test registers is unregistered after it."""
    pm = hw_targets.get_plugin_manager()
    before = {id(p) for p in pm.get_plugins()}
    yield pm
    for plugin in list(pm.get_plugins()):
        if id(plugin) not in before:
            pm.unregister(plugin)


def test_a_plugin_kind_decodes_builds_and_emits(plugin_manager: Any) -> None:
    with pytest.raises(SpaceError, match="unknown block 'clamp_v2'"):
        decode("clamp_v2")
    plugin_manager.register(BlocksPlugin(ClampKind()), "test-blocks")
    assert "clamp" in KINDS
    assert encode(decode("clamp_v2")) == "clamp_v2"
    encoding = "conv_k3_s1_c4_relu-clamp_v1-gap"
    net, data = trained(encoding, IMAGE), exported(encoding, IMAGE)
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node].count("Clip") == 1
    x = (np.random.default_rng(2).standard_normal((1, *IMAGE)) * 3).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_onnx(data, x), want, rtol=0, atol=1e-4)
    assert chain_cost(decode_blocks(encoding), IMAGE, CLASSES).live == graph_live(model)
    plugin_manager.unregister(name="test-blocks")
    with pytest.raises(SpaceError, match="unknown block"):
        decode("clamp_v2")  # the registry follows the plugin manager


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (NamedKind("conv", "cv"), "plugin 'test-twin': the block kind name 'conv' is taken"),
        (NamedKind("conv2", "conv"), "the block prefix 'conv' is taken by 'conv'"),
        (NamedKind("Bad", "bad"), "block kind name 'Bad' must be lower-case"),
        ("not a kind", "returned str from hwnas_search_blocks, not a search.blocks.BlockKind"),
    ],
)
def test_a_plugin_kind_that_does_not_fit_is_refused(
    plugin_manager: Any, kind: Any, message: str
) -> None:
    plugin_manager.register(BlocksPlugin(kind), "test-twin")
    with pytest.raises(PluginError) as info:
        decode("conv_k3_s1_c8_relu")
    assert message in str(info.value)


def test_register_refuses_a_taken_name_or_prefix() -> None:
    with pytest.raises(SpaceError, match="the block kind name 'conv' is taken"):
        register(NamedKind("conv", "cv"))
    with pytest.raises(SpaceError, match="the block prefix 'mb' is taken by 'mbconv'"):
        register(NamedKind("mobile", "mb"))
    register(ClampKind())
    try:
        assert decode("clamp_v3") == Block("clamp", (("limit", 3),))
        with pytest.raises(SpaceError, match="'clamp' is taken"):
            register(ClampKind())
    finally:
        unregister("clamp")
    with pytest.raises(SpaceError, match="not a block kind added with register"):
        unregister("conv")


# --- the references -----------------------------------------------------------------------


def _check_reference_runs(net: BlockNet, classes: int) -> None:
    data = to_onnx(net)
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    x = np.random.default_rng(4).standard_normal((1, *net.input_shape)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = run_onnx(data, x)
    assert got.shape == (1, classes)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    cost = chain_cost(net.block_list, net.input_shape, classes)
    assert cost.params == graph_params(model) == folded_torch_params(net)
    assert cost.macs == graph_macs(model)
    assert cost.live == graph_live(model)


def test_resnet8_is_mlperf_tinys() -> None:
    ref = resnet8()
    net = with_moved_statistics(BlockNet(ref.blocks, ref.input_shape, 10))
    _check_reference_runs(net, 10)
    cost = chain_cost(ref.blocks, ref.input_shape, 10)
    # MLPerf Tiny's Keras ResNet-8 reports 78,666 parameters: its convs carry biases and
    # each of its 240 BatchNorm channels 4 numbers (gamma, beta, mean, variance); folded,
    # only the biases remain: 78,666 - 4 x 240 = 77,706.
    assert cost.params == 78_666 - 4 * 240
    assert cost.macs == 12_501_632  # MLPerf Tiny's "12.5M MACs", counted by hand
    assert [a.kind for a in ref.blocks] == ["conv", "res", "res", "res", "gap"]
    assert net.features_shape == (64, 1, 1)


def test_mobilenet_v2_at_width_035() -> None:
    ref = mobilenet_v2(0.35)
    net = with_moved_statistics(BlockNet(ref.blocks, ref.input_shape, 10))
    _check_reference_runs(net, 10)
    shapes = infer_shapes(ref.blocks, ref.input_shape)
    assert shapes[-2][1] == (1280, 4, 4)  # CIFAR adaptation: 32x32 downsampled by 8
    widths = sorted({b["width"] for b in ref.blocks if b.kind == "mbconv"})
    assert widths == [8, 16, 24, 32, 56, 112]  # 16..320 x 0.35, to multiples of 8
    assert ref.blocks[0] == decode("conv_k3_s1_c16_relu6")  # 32 x 0.35 -> 16
    assert chain_cost(ref.blocks, ref.input_shape, 10).params == 401_898
    # the ImageNet form (stride-2 stem and stage 2, 224x224, 1000 classes) against the
    # published figures of MobileNetV2 0.35 (TF-slim's table: 1.66M params, 59M MACs)
    imagenet = mobilenet_v2(0.35, cifar=False, num_classes=1000, input_shape=(3, 224, 224))
    cost = chain_cost(imagenet.blocks, imagenet.input_shape, 1000)
    assert abs(cost.params / 1.66e6 - 1) < 0.01
    assert abs(cost.macs / 59e6 - 1) < 0.01


def test_mobilenet_v2_at_width_1_has_torchvisions_parameter_count() -> None:
    # torchvision's mobilenet_v2() (convs without bias, BN with 2 trainable vectors): 3,504,872
    ref = mobilenet_v2(1.0, cifar=False, num_classes=1000)
    net = BlockNet(ref.blocks, ref.input_shape, 1000)
    assert sum(p.numel() for p in net.parameters()) == 3_504_872
    assert chain_cost(ref.blocks, ref.input_shape, 1000).params == folded_torch_params(net)
