"""Each block kind's latency-table ops (one-block ONNX models that run as the block does in
torch) and its pruning groups (which channels go together, which stay), through the chain
and through Torch-Pruning's dependency graph on real nets, residual adds included."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from search.blocks import (
    KINDS,
    BlockNet,
    PruneGroup,
    Shape,
    TableOp,
    chain_ops,
    decode,
    decode_blocks,
    frozen_modules,
    kind_of,
    net_groups,
    op_model,
    pruned_blocks,
    register,
    to_onnx,
    unregister,
)
from search.blocks.base import channels_of
from search.errors import SearchError, SpaceError
from search.predict.ops import LayerOp, layer_model

from .blocks_support import ClampKind, run_onnx, with_moved_statistics

IMAGE: Shape = (8, 9, 7)
SIGNAL: Shape = (8, 17)
#: every built-in kind, with and without its residual / projection / squeeze-excite
TOKENS = [
    "conv_k3_s1_c8_relu",
    "conv_k5_s2_c6_hswish",
    "dw_k3_s2_c8_relu6",
    "dw_k5_s1_c4_hswish",
    "mb_e1_k3_s1_c8_relu6",
    "mb_e6_k5_s2_c8_se_hswish",
    "mb_e4_k3_s1_c8_se_relu6",
    "mb_e3_k7_s1_c6_relu",
    "res_s1_c8_relu",
    "res_s2_c8_relu6",
    "res_s1_c6_hswish",
    "pool_max_k2_s2",
    "pool_avg_k3_s1",
    "gap",
    "fc_u16_relu",
    "skip",
]
CASES = [
    pytest.param(t, s, id=f"{t}@{'x'.join(map(str, s))}") for t in TOKENS for s in (IMAGE, SIGNAL)
]
KEY = re.compile(r"[a-z][a-z0-9_]*@[1-9][0-9]*(x[1-9][0-9]*)*")


# --- table ops ------------------------------------------------------------------------------


@pytest.mark.parametrize(("token", "shape"), CASES)
def test_each_kind_measures_itself_as_one_op_keyed_like_the_table(token: str, shape: Shape) -> None:
    block = decode(token)
    ops = kind_of(block).table_ops(block, shape)
    if block.kind == "skip":
        assert ops == ()  # no node, nothing to measure
        return
    assert ops == (TableOp(block.kind, token, shape),)
    assert KEY.fullmatch(ops[0].key())
    assert ops[0].key() == f"{token}@{'x'.join(map(str, shape))}"


@pytest.mark.parametrize(("token", "shape"), [c for c in CASES if "skip" not in c.id])
def test_an_op_model_runs_the_nodes_the_block_writes_in_the_net(token: str, shape: Shape) -> None:
    """The one-block model has the block's nodes in the full net's export (no BatchNorm),
    and computes what the block's torch module does with the same weights."""
    block = decode(token)
    (op,) = kind_of(block).table_ops(block, shape)
    model = onnx.load_from_string(op_model(op))
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert "BatchNormalization" not in ops
    full = onnx.load_from_string(to_onnx(BlockNet([block], shape, 3)))
    in_net = [n.op_type for n in full.graph.node if n.name.startswith("blocks.0.")]
    assert ops == in_net
    # same seed, same weights: the op model is the module with BatchNorm folded
    x = np.random.default_rng(1).standard_normal((1, *shape)).astype(np.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = kind_of(block).module(block, shape).eval()
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_onnx(op_model(op), x), want, rtol=0, atol=1e-4)


def test_a_chain_lists_its_blocks_ops_then_the_classifier() -> None:
    blocks = decode_blocks("conv_k3_s2_c8_relu-skip-mb_e6_k3_s1_c8_se_relu6-res_s2_c16_relu-gap")
    keys = [op.key() for op in chain_ops(blocks, (3, 16, 16), 10)]
    assert keys == [
        "conv_k3_s2_c8_relu@3x16x16",
        "mb_e6_k3_s1_c8_se_relu6@8x8x8",
        "res_s2_c16_relu@8x8x8",
        "gap@16x4x4",
        "cls_u10@16x1x1",
    ]
    classifier = chain_ops(blocks, (3, 16, 16), 10)[-1]
    assert classifier.kind == "classifier"
    model = onnx.load_from_string(op_model(classifier))
    assert [n.op_type for n in model.graph.node] == ["Flatten", "Gemm"]
    assert run_onnx(op_model(classifier), np.ones((1, 16, 1, 1), np.float32)).shape == (1, 10)


def test_a_conv_op_is_the_graph_the_current_table_measures() -> None:
    """``conv_k3_s1_c16_relu`` on a 2-D map runs the nodes of ``LayerOp('conv', ...)``
    (a biased Conv, then Relu): the table can take block ops without changing what it times."""
    (op,) = KINDS["conv"].table_ops(decode("conv_k3_s1_c16_relu"), (8, 12, 12))
    ours = onnx.load_from_string(op_model(op)).graph
    theirs = onnx.load_from_string(layer_model(LayerOp("conv", (8, 12, 12), 3, 1, 16))).graph
    assert [n.op_type for n in ours.node] == [n.op_type for n in theirs.node] == ["Conv", "Relu"]
    assert [list(i.dims) for i in ours.initializer] == [list(i.dims) for i in theirs.initializer]
    assert op.key() == "conv_k3_s1_c16_relu@8x12x12"  # LayerOp: conv_k3_s1_c16@8x12x12


def test_a_bad_op_is_refused() -> None:
    with pytest.raises(SpaceError, match="is a conv, not a res"):
        op_model(TableOp("res", "conv_k3_s1_c8_relu", (8, 5, 5)))
    with pytest.raises(SpaceError, match="expected cls_u<classes>"):
        op_model(TableOp("classifier", "cls_x", (8,)))
    with pytest.raises(SpaceError, match="writes no node"):
        op_model(TableOp("skip", "skip", (8, 5, 5)))


# --- pruning groups -------------------------------------------------------------------------


@pytest.mark.parametrize(("token", "shape"), CASES)
def test_every_group_names_modules_of_its_width_and_one_output(token: str, shape: Shape) -> None:
    block = decode(token)
    kind = kind_of(block)
    groups = kind.prune_groups(block, shape)
    module = kind.module(block, shape)
    assert [g.output for g in groups].count(True) == 1
    (out,) = [g for g in groups if g.output]
    assert out.width == kind.output_shape(block, shape)[0]
    for group in groups:
        for path in group.modules:
            assert channels_of(module.get_submodule(path)) == group.width, (group, path)
        if group.tied_to_input:
            assert group.width == shape[0]
        assert not (group.derived and group.gene), group
    # every conv, linear and BatchNorm of the block belongs to exactly one group
    named = {p for g in groups for p in g.modules}
    layers = {
        n
        for n, m in module.named_modules()
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d))
    }
    assert named == layers
    assert sum(len(g.modules) for g in groups) == len(named)
    assert kind.pruned(block, module, shape) == block  # nothing pruned: the same block


@pytest.mark.parametrize(
    ("token", "cin", "expected"),
    [
        # (name, gene, tied_to_input, derived, output) per group
        ("conv_k3_s1_c8_relu", 4, [("width", "width", False, False, True)]),
        (
            "dw_k3_s1_c8_relu",
            4,
            [("depthwise", None, True, False, False), ("width", "width", False, False, True)],
        ),
        (
            "mb_e6_k3_s1_c8_se_relu6",
            8,
            [
                ("hidden", None, False, True, False),
                ("squeeze", None, False, True, False),
                ("width", "width", True, False, True),  # the residual add ties it
            ],
        ),
        (
            "mb_e1_k3_s2_c8_relu6",
            8,
            [("hidden", None, True, False, False), ("width", "width", False, False, True)],
        ),
        (
            "mb_e6_k3_s1_c8_relu6",
            4,  # widths differ: no add, nothing tied
            [("hidden", None, False, True, False), ("width", "width", False, False, True)],
        ),
        (
            "res_s1_c8_relu",
            8,
            [("mid", "width", False, False, False), ("width", "width", True, False, True)],
        ),
        (
            "res_s2_c8_relu",
            8,  # projected: its output is its own
            [("mid", "width", False, False, False), ("width", "width", False, False, True)],
        ),
        ("pool_max_k2_s2", 4, [("channels", None, True, False, True)]),
        ("gap", 4, [("channels", None, True, False, True)]),
        ("skip", 4, [("channels", None, True, False, True)]),
        ("fc_u16_relu", 4, [("units", "units", False, False, True)]),
    ],
)
def test_what_each_kind_ties_and_keeps(token: str, cin: int, expected: list[Any]) -> None:
    block = decode(token)
    groups = kind_of(block).prune_groups(block, (cin, 9, 9))
    got = [(g.name, g.gene, g.tied_to_input, g.derived, g.output) for g in groups]
    assert got == expected


def test_resnet8s_residual_stages_are_pruned_as_one() -> None:
    blocks = decode_blocks(
        "conv_k3_s1_c16_relu-res_s1_c16_relu-res_s2_c32_relu-res_s2_c64_relu-gap"
    )
    groups = net_groups(blocks, (3, 32, 32))
    summary = [(g.width, g.genes, g.prunable) for g in groups]
    assert summary == [
        (3, (), False),  # the data's channels
        (16, ((0, "width"), (1, "width")), True),  # the stem and res 1's identity add
        (16, ((1, "width"),), True),  # res 1's middle
        (32, ((2, "width"),), True),
        (32, ((2, "width"),), True),  # res 2: projected, its own output
        (64, ((3, "width"),), True),
        (64, ((3, "width"),), True),  # gap passes them to the classifier
    ]
    assert groups[0].reason == "the data's channels"
    assert "blocks.1.body.1.conv" in groups[1].modules
    assert "blocks.0.conv" in groups[1].modules


def test_a_width_an_mbconv_expands_stays() -> None:
    blocks = decode_blocks(
        "conv_k3_s1_c16_relu6-mb_e6_k3_s1_c16_relu6-mb_e1_k3_s2_c24_relu6-conv_k1_s1_c32_relu6-gap"
    )
    groups = net_groups(blocks, (3, 16, 16))
    by_width = {(g.width, g.genes): g for g in groups}
    stem = by_width[(16, ((0, "width"), (1, "width")))]
    assert not stem.prunable
    assert stem.reason == "block 1 (mb_e6_k3_s1_c16_relu6) derives its hidden width from it"
    hidden = by_width[(96, ())]
    assert not hidden.prunable
    assert "no gene says its hidden width" in hidden.reason
    assert by_width[(24, ((2, "width"),))].prunable  # e1: its depthwise follows its input
    assert by_width[(32, ((3, "width"),))].prunable


def test_a_gene_whose_other_group_stays_stays_too() -> None:
    """res's one width gene says its middle and its output: when an mbconv's squeeze-excite
    freezes the output (it squeezes from its input), the middle is not cut either."""
    blocks = decode_blocks(
        "conv_k3_s1_c16_relu-res_s2_c32_relu-mb_e1_k3_s1_c32_se_relu6-conv_k1_s1_c8_relu-gap"
    )
    groups = net_groups(blocks, (3, 16, 16))
    summary = [(g.width, g.genes, g.prunable) for g in groups]
    assert summary == [
        (3, (), False),
        (16, ((0, "width"),), True),
        (32, ((1, "width"),), False),  # res's middle, frozen by its output
        (32, ((1, "width"), (2, "width")), False),  # the squeeze is computed from it
        (8, (), False),  # the squeeze itself
        (8, ((3, "width"),), True),
    ]
    assert groups[2].reason == "block 1's gene 'width' also says a width that stays"


def _tp_prune(net: BlockNet, ratio: float) -> BlockNet:
    import torch_pruning as tp  # type: ignore[import-untyped, unused-ignore]

    example = torch.zeros(1, *net.input_shape)
    pruner = tp.pruner.BasePruner(
        net,
        example,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        ignored_layers=frozen_modules(net),
    )
    pruner.step()
    return net


@pytest.mark.parametrize(
    ("encoding", "shape", "expected"),
    [
        (
            "conv_k3_s1_c16_relu-res_s1_c16_relu-res_s2_c32_relu-res_s2_c64_relu-gap",
            (3, 16, 16),
            "conv_k3_s1_c12_relu-res_s1_c12_relu-res_s2_c24_relu-res_s2_c48_relu-gap",
        ),
        (
            "conv_k3_s1_c16_relu6-mb_e6_k3_s1_c16_se_relu6-mb_e1_k3_s2_c24_relu6"
            "-dw_k3_s1_c32_relu6-conv_k1_s1_c64_relu6-gap",
            (3, 16, 16),
            "conv_k3_s1_c16_relu6-mb_e6_k3_s1_c16_se_relu6-mb_e1_k3_s2_c18_relu6"
            "-dw_k3_s1_c24_relu6-conv_k1_s1_c48_relu6-gap",
        ),
        (
            "conv_k5_s2_c16_hswish-res_s1_c16_hswish-pool_max_k2_s2-fc_u32_relu",
            (6, 32),  # 1-D
            "conv_k5_s2_c12_hswish-res_s1_c12_hswish-pool_max_k2_s2-fc_u24_relu",
        ),
    ],
)
def test_torch_pruning_cuts_whole_groups_and_the_blocks_read_back(
    encoding: str, shape: Shape, expected: str
) -> None:
    """Torch-Pruning with ``frozen_modules`` as its ignored layers cuts only prunable groups
    (residual adds kept consistent); the pruned widths read back into blocks whose fresh
    BlockNet takes the pruned weights and computes the same logits, through ONNX too."""
    net = with_moved_statistics(BlockNet(decode_blocks(encoding), shape, 5, seed=1))
    assert isinstance(net, BlockNet)
    pruned = _tp_prune(net, 0.25)
    blocks = pruned_blocks(pruned)
    assert "-".join(kind_of(b).encode(b) for b in blocks) == expected
    fresh = BlockNet(blocks, shape, 5).eval()
    fresh.load_state_dict(pruned.state_dict())
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        np.testing.assert_allclose(fresh(x).numpy(), pruned(x).numpy(), rtol=0, atol=1e-5)
        want = fresh(x[:1]).numpy()
    np.testing.assert_allclose(run_onnx(to_onnx(fresh), x[:1].numpy()), want, rtol=0, atol=1e-4)


def test_a_block_pruned_two_ways_for_one_gene_is_refused() -> None:
    block = decode("res_s1_c8_relu")
    module = kind_of(block).module(block, (8, 5, 5))
    module.body[0].conv.out_channels = 6  # the middle cut, the output not
    with pytest.raises(SearchError, match="pruned to 6 and 8 channels for its one gene 'width'"):
        kind_of(block).pruned(block, module, (8, 5, 5))


def test_a_kind_without_its_own_rule_is_left_alone_and_so_is_its_input() -> None:
    register(ClampKind())
    try:
        blocks = decode_blocks("conv_k3_s1_c8_relu-clamp_v2-conv_k3_s1_c8_relu")
        block = blocks[1]
        assert kind_of(block).prune_groups(block, (8, 5, 5)) == (
            PruneGroup("output", 8, ("",), derived=True, output=True),
        )
        assert kind_of(block).table_ops(block, (8, 5, 5)) == (
            TableOp("clamp", "clamp_v2", (8, 5, 5)),
        )
        groups = net_groups(blocks, (3, 5, 5))
        assert [(g.width, g.genes, g.prunable) for g in groups] == [
            (3, (), False),
            (8, ((0, "width"),), False),  # clamp was built for 8 input channels
            (8, (), False),
            (8, ((2, "width"),), True),
        ]
        assert groups[1].reason == "block 1 (clamp_v2) derives its output width from it"
        net = BlockNet(blocks, (3, 5, 5), 4)
        frozen = frozen_modules(net)
        assert net.blocks[1] in frozen  # the whole block
        assert net.blocks[0].conv in frozen
        assert net.blocks[2].conv not in frozen
        assert net.classifier in frozen
        model = onnx.load_from_string(op_model(kind_of(block).table_ops(block, (8, 5, 5))[0]))
        assert [n.op_type for n in model.graph.node] == ["Clip"]
    finally:
        unregister("clamp")
