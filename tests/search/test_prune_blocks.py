"""Structured pruning of block nets (issue 19, item 6): Torch-Pruning across residual adds.

``prune()`` on nets of every built-in kind, 1-D and 2-D, with and without a resolution
stem: the pruned module runs, its encoding re-decodes to a net of its shapes, the direct
ONNX export equals torch (no BatchNormalization node, every Add's inputs of one shape),
the classifier keeps its outputs; l1 and taylor; fine-tuning; a net read back from its
ONNX file (the search's ``SearchedModel.module``) unfolded and pruned; the references;
the errors; ``compress_searched`` on a stage-space search's answer and ``compress_onnx`` on a
block model's file, measured on local."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from search import Searcher, SearchSpace
from search.blocks import BlockCandidate, StageSpace, StageSpec, register, unregister
from search.blocks.candidate_net import BlockCandidateNet, OnnxBlockNet
from search.blocks.references import mobilenet_v2, resnet8
from search.build import build
from search.compress import CompressSettings, Labelled, compress_onnx, compress_searched
from search.compress.errors import CompressionError
from search.compress.prune import channel_count, fine_tune, prunable_widths, prune
from search.compress.unfold import unfold
from search.errors import SettingsError
from search.measure import Board, bench_settings
from search.onnx_export import from_onnx, to_onnx
from search.training.data import Split, split

from .blocks_support import ClampKind, run_onnx, with_moved_statistics

SMALL = {"min_time_s": 0.02, "min_iterations": 5, "warmup_min_s": 0.0}
#: every built-in kind among them: conv, dwconv, mbconv (e1 with its add, SE, e6 with SE and
#: its add), res (identity and projection), pool, gap, fc, skip; 2-D, 1-D, resolution stems
NETS = {
    "image": (
        "in12x12x3-conv_k3_s1_c16_relu-res_s1_c16_relu-res_s2_c24_hswish-pool_max_k2_s2"
        "-skip-gap-fc_u16_relu-out5"
    ),
    "mobile": (
        "in12x12x3-conv_k3_s1_c16_relu6-mb_e1_k3_s1_c16_relu6-mb_e1_k3_s2_c24_relu6"
        "-mb_e6_k3_s1_c24_se_hswish-dw_k3_s1_c32_relu6-conv_k1_s1_c32_relu6-gap-out4"
    ),
    "signal": (
        "in32x4-r24-conv_k3_s1_c8_relu6-res_s1_c8_relu6-mb_e1_k3_s1_c8_relu6"
        "-dw_k5_s2_c16_hswish-pool_avg_k2_s2-fc_u16_relu-out3"
    ),
    "resized": "in10x10x3-r8-conv_k3_s2_c8_relu-mb_e3_k3_s1_c8_se_relu6-gap-fc_u16_relu-out3",
}
#: what ``ratio`` 0.5 leaves: groups an mbconv expands (or squeezes) from stay whole
HALVED = {
    "image": (
        "in12x12x3-conv_k3_s1_c8_relu-res_s1_c8_relu-res_s2_c12_hswish-pool_max_k2_s2"
        "-skip-gap-fc_u8_relu-out5"
    ),
    "mobile": (
        "in12x12x3-conv_k3_s1_c8_relu6-mb_e1_k3_s1_c8_relu6-mb_e1_k3_s2_c24_relu6"
        "-mb_e6_k3_s1_c24_se_hswish-dw_k3_s1_c16_relu6-conv_k1_s1_c16_relu6-gap-out4"
    ),
    "signal": (
        "in32x4-r24-conv_k3_s1_c4_relu6-res_s1_c4_relu6-mb_e1_k3_s1_c4_relu6"
        "-dw_k5_s2_c8_hswish-pool_avg_k2_s2-fc_u8_relu-out3"
    ),
    "resized": "in10x10x3-r8-conv_k3_s2_c8_relu-mb_e3_k3_s1_c8_se_relu6-gap-fc_u8_relu-out3",
}


def _net(encoding: str, seed: int = 1) -> BlockCandidateNet:
    """A net whose BatchNorm statistics are off their initial values (so folding matters)."""
    net = build(BlockCandidate.decode(encoding), seed=seed)
    assert isinstance(net, BlockCandidateNet)
    return with_moved_statistics(net)


def _data(candidate: BlockCandidate, n: int = 64, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *candidate.data_shape)).astype(np.float32)
    y = rng.integers(0, candidate.num_classes, n)
    return Split(x[: n // 2], y[: n // 2], x[n // 2 :], y[n // 2 :])


def _add_input_shapes(model: bytes) -> list[list[tuple[int, ...]]]:
    """The shapes of each Add node's inputs, by ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(onnx.load_from_string(model), strict_mode=True)
    shapes = {
        v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
        for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    }
    return [[shapes[i] for i in n.input] for n in inferred.graph.node if n.op_type == "Add"]


def _state_shapes(net: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def check_pruned(net: BlockCandidateNet, small: nn.Module, x: np.ndarray) -> None:
    """Everything a pruned block net must be: see the module docstring."""
    assert isinstance(small, BlockCandidateNet)
    candidate = small.block_candidate
    again = BlockCandidate.decode(candidate.encode())
    assert again == candidate
    assert _state_shapes(build(again)) == _state_shapes(small)  # the encoding is the net
    assert small.net.classifier.out_features == net.block_candidate.num_classes
    assert channel_count(small) < channel_count(net)
    small.eval()
    with torch.no_grad():
        logits = small(torch.from_numpy(x))
    assert logits.shape == (len(x), net.block_candidate.num_classes)
    model = to_onnx(small)
    ops = [n.op_type for n in onnx.load_from_string(model).graph.node]
    assert "BatchNormalization" not in ops
    np.testing.assert_allclose(run_onnx(model, x[:1]), logits[:1].numpy(), rtol=0, atol=1e-4)
    for inputs in _add_input_shapes(model):
        assert len(set(inputs)) == 1, inputs  # the residual add's channels still match


@pytest.mark.parametrize("importance", ["l1", "taylor"])
@pytest.mark.parametrize("name", list(NETS))
def test_a_block_net_is_pruned_and_stays_true_to_its_encoding(name: str, importance: str) -> None:
    net = _net(NETS[name])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    data = _data(net.block_candidate)
    small = prune(net, 0.5, importance=importance, data=data)
    assert small.candidate.encode() == HALVED[name]
    check_pruned(net, small, data.x_val[:4])
    # the original is left as it was
    assert net.candidate.encode() == NETS[name]
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_the_residual_adds_of_a_pruned_net_keep_matching_channels() -> None:
    net = _net(NETS["mobile"])
    small = prune(net, 0.25)
    shapes = _add_input_shapes(to_onnx(small))
    assert shapes == [[(1, 12, 12, 12), (1, 12, 12, 12)], [(1, 24, 6, 6), (1, 24, 6, 6)]]


def test_the_count_of_prunable_groups_is_what_pruning_cuts() -> None:
    counts = {name: prunable_widths(BlockCandidate.decode(enc)) for name, enc in NETS.items()}
    # image: stem+res1, res1's middle, res2's middle, res2's output (pooled, gap'd), fc
    assert counts == {"image": 5, "mobile": 3, "signal": 4, "resized": 1}


def test_a_pruned_block_net_fine_tunes() -> None:
    net = _net(NETS["signal"])
    data = _data(net.block_candidate, 96)
    small = prune(net, 0.5, data=data)
    weights = [p.detach().clone() for p in small.parameters()]
    accuracy = fine_tune(small, data, epochs=1, lr=1e-3, seed=0)
    assert 0.0 <= accuracy <= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(weights, small.parameters(), strict=True))
    check_pruned(net, small, data.x_val[:4])


def test_a_net_read_back_from_onnx_is_unfolded_then_pruned() -> None:
    """The search hands its answer over as the ONNX bytes it measured (BatchNorm folded):
    unfolding gives a module that computes what the bytes do, in eval mode exactly and in
    train mode on the data its statistics came from nearly, and it prunes as the original."""
    net = _net(NETS["mobile"]).eval()
    back = from_onnx(to_onnx(net))
    assert isinstance(back, OnnxBlockNet)
    data = _data(net.block_candidate)
    x = torch.from_numpy(data.x_train)
    unfolded = unfold(back, data.x_train)
    with torch.no_grad():
        np.testing.assert_allclose(unfolded(x).numpy(), net(x).numpy(), rtol=0, atol=1e-4)
        train_mode = unfolded.train()(x).numpy()
    np.testing.assert_allclose(train_mode, net(x).detach().numpy(), rtol=0, atol=1e-3)
    assert channel_count(back) == channel_count(net)
    for importance in ("l1", "taylor"):
        small = prune(back, 0.5, importance=importance, data=data)
        assert small.candidate.encode() == HALVED["mobile"]
        check_pruned(net, small, data.x_val[:4])


def test_a_file_that_is_not_the_candidates_graph_is_not_unfolded() -> None:
    net = _net(NETS["resized"]).eval()
    model = onnx.load_from_string(to_onnx(net))
    old = model.graph.initializer[0].name
    model.graph.initializer[0].name = "renamed"  # another exporter's graph, same nodes
    for node in model.graph.node:
        node.input[:] = ["renamed" if name == old else name for name in node.input]
    back = from_onnx(model.SerializeToString())
    assert isinstance(back, OnnxBlockNet)
    with pytest.raises(CompressionError, match="not the one this candidate exports"):
        unfold(back)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (resnet8(), "conv_k3_s1_c12_relu-res_s1_c12_relu-res_s2_c24_relu-res_s2_c48_relu-gap"),
        (mobilenet_v2(0.35), None),
    ],
    ids=["resnet8", "mobilenet_v2"],
)
def test_the_references_prune(reference: object, expected: str | None) -> None:
    channels, height, width = reference.input_shape  # type: ignore[attr-defined]
    candidate = BlockCandidate.of((height, width, channels), reference.blocks, 10)  # type: ignore[attr-defined]
    net = with_moved_statistics(build(candidate, seed=0))
    assert isinstance(net, BlockCandidateNet)
    small = prune(net, 0.25)
    blocks = small.candidate.encode().split("-")[1:-1]
    if expected is not None:
        assert "-".join(blocks) == expected
    else:  # MobileNetV2: the stem (with the e1 block's depthwise), the last mbconv's output
        # (a 1x1 conv reads it) and the last 1x1 conv; every other width is expanded from
        before = reference.encoding.split("-")  # type: ignore[attr-defined]
        changed = [(a, b) for a, b in zip(before, blocks, strict=True) if a != b]
        assert changed == [
            ("conv_k3_s1_c16_relu6", "conv_k3_s1_c12_relu6"),
            ("mb_e6_k3_s1_c112_relu6", "mb_e6_k3_s1_c84_relu6"),
            ("conv_k1_s1_c1280_relu6", "conv_k1_s1_c960_relu6"),
        ]
    x = np.random.default_rng(0).standard_normal((2, channels, height, width)).astype(np.float32)
    check_pruned(net, small, x)


def test_a_plugin_kind_that_says_nothing_is_kept_and_the_rest_prunes() -> None:
    register(ClampKind())
    try:
        net = _net("in6x6x3-conv_k3_s1_c8_relu-clamp_v2-conv_k3_s1_c8_relu-gap-out3").eval()
        data = _data(net.block_candidate)
        want = "in6x6x3-conv_k3_s1_c8_relu-clamp_v2-conv_k3_s1_c4_relu-gap-out3"
        for source in (net, from_onnx(to_onnx(net))):
            small = prune(source, 0.5, data=data)
            assert small.candidate.encode() == want
            check_pruned(net, small, data.x_val[:2])
    finally:
        unregister("clamp")


class NoGeneKind(ClampKind):
    """A clamp whose output group no gene says (and that is not its input's)."""

    name = "nogene"
    prefix = "nogene"

    def prune_groups(self, block, shape):  # type: ignore[no-untyped-def]
        from search.blocks import PruneGroup

        return (PruneGroup("output", shape[0], ("",), output=True),)


def test_errors_are_clear() -> None:
    net = _net("in8x8x3-conv_k3_s1_c2_relu-gap-out3")
    too_much = r"ratio 0.6 would leave no channel of the 2 of block 0 \(conv_k3_s1_c2_relu\)"
    with pytest.raises(CompressionError, match=too_much + " 'width': use a ratio of at most 0.5"):
        prune(net, 0.6)
    assert prune(net, 0.5).candidate.encode() == "in8x8x3-conv_k3_s1_c1_relu-gap-out3"
    with pytest.raises(SettingsError, match=r"in \(0, 1\)"):
        prune(net, 1.0)
    with pytest.raises(SettingsError, match="taylor importance needs training data"):
        prune(net, 0.5, importance="taylor")
    frozen = _net("in10x10x3-conv_k3_s2_c8_relu-mb_e3_k3_s1_c8_relu6-gap-out3")
    with pytest.raises(CompressionError, match=r"no channel group to prune .*derives its hidden"):
        prune(frozen, 0.5)
    register(NoGeneKind())
    try:
        odd = _net("in6x6x3-nogene_v2-gap-out3")
        assert prunable_widths(odd.block_candidate) == 0
        with pytest.raises(CompressionError, match=r"block 0 \(nogene_v2\): no gene says its out"):
            prune(odd, 0.5)
    finally:
        unregister("nogene")


def test_compress_searched_prunes_a_stage_space_result(tmp_path: Path) -> None:
    """A 1-trial stage-space search on 16x16x3 images; its answer (a SearchedModel whose
    module runs the measured bytes) is pruned, fine-tuned, quantized and measured on local."""
    rng = np.random.default_rng(0)
    x = rng.random((96, 16, 16, 3), dtype=np.float32)
    y = (x[:, :8].mean(axis=(1, 2, 3)) > x[:, 8:].mean(axis=(1, 2, 3))).astype(int)
    stages = StageSpace(
        stages=(
            StageSpec("conv", (1, 1), (16,), stride=2),
            StageSpec("mbconv", (1, 1), (16,), stride=1, kernels=(3,), expansions=(1,)),
        ),
        fc_units=(16,),
    )
    space = SearchSpace(input_shape=(16, 16, 3), stages=stages)  # type: ignore[arg-type]
    best = Searcher(
        space, strategy="random", epochs=1, trials=1, out=tmp_path / "run", bench=SMALL
    ).search(x, y)
    data = split(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y, 0.25, 0)
    settings = CompressSettings(
        prune_ratios=(0.5,), methods=("minmax",), rounds=2, fine_tune_epochs=1,
        calibration_samples=32, dynamic="off",
    )  # fmt: skip
    board = Board("local", bench=bench_settings(SMALL))
    try:
        result = compress_searched(best, data, board, settings=settings, out=tmp_path / "c")
    finally:
        board.close()
    names = [v.name for v in result.variants]
    assert names == ["fp32", "int8", "pruned50", "pruned50_int8"]
    pruned = result.variant("pruned50")
    # every width halved: the stem, the mbconv e1's add with it, the fc
    assert re.fullmatch(r"in16x16x3(-conv_k3_s2_c8_\w+)+-mb_e1_k3_s1_c8_\w+-gap-fc_u8_\w+-out2",
                        pruned.details["candidate"])  # fmt: skip
    assert pruned.details["channels"][1] < pruned.details["channels"][0]
    back = from_onnx(pruned.model)
    assert back.candidate.encode() == pruned.details["candidate"]
    assert "BatchNormalization" not in {
        n.op_type for n in onnx.load(tmp_path / "c" / "pruned50.onnx").graph.node
    }
    for v in result.variants:
        assert v.timing.measured, v.timing.error


def test_compress_onnx_prunes_a_block_models_file(tmp_path: Path) -> None:
    """``hwnas compress``'s path: the block model's ONNX file (BatchNorm folded) with
    labelled calibration and evaluation data gives pruned variants too."""
    net = _net("in16x16x3-conv_k3_s2_c16_relu6-mb_e1_k3_s1_c16_relu6-gap-fc_u16_relu-out2")
    rng = np.random.default_rng(0)
    x = rng.random((64, 3, 16, 16), dtype=np.float32)
    y = rng.integers(0, 2, 64)
    settings = CompressSettings(
        prune_ratios=(0.5,), methods=("minmax",), rounds=2, fine_tune_epochs=1,
        calibration_samples=32,
    )  # fmt: skip
    board = Board("local", bench=bench_settings(SMALL))
    try:
        result = compress_onnx(
            to_onnx(net), board, calibration=Labelled(x, y, "calibration"),
            evaluation=Labelled(x, y, "evaluation"), settings=settings,
        )  # fmt: skip
    finally:
        board.close()
    assert [v.name for v in result.variants] == ["fp32", "int8", "pruned50", "pruned50_int8"]
    assert result.notes == []
    pruned = result.variant("pruned50")
    assert pruned.details["candidate"] == (
        "in16x16x3-conv_k3_s2_c8_relu6-mb_e1_k3_s1_c8_relu6-gap-fc_u8_relu-out2"
    )
    assert pruned.details["channels"] == [64, 32]
