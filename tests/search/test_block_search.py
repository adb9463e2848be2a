"""The stage space searched end to end on `local` (issue 19, done-when 1-2): conv, mbconv,
gap and the classifier on 32x32x3 images, and (L, C) signals; each search writes a
best.onnx with no BatchNormalization node, and the measured models hold residual adds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from search import Searcher, SearchSpace
from search.blocks import BlockCandidate, StageSpace, StageSpec
from search.build import build
from search.errors import SettingsError, SpaceError
from search.onnx_export import from_onnx, to_onnx
from search.space import Candidate

SMALL = {"min_time_s": 0.02, "min_iterations": 5, "warmup_min_s": 0.0}


def image_space(**kw: object) -> SearchSpace:
    stages = [
        StageSpec("conv", (1, 1), (8,), stride=2),
        StageSpec("mbconv", (1, 2), (8, 16), stride=1, kernels=(3, 5), expansions=(3,)),
    ]
    space = StageSpace(stages=tuple(stages), fc_units=(16, 32))
    return SearchSpace(input_shape=(32, 32, 3), stages=space, **kw)  # type: ignore[arg-type]


def images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 32, 32, 3), dtype=np.float32)
    y = (x[:, :16].mean(axis=(1, 2, 3)) > x[:, 16:].mean(axis=(1, 2, 3))).astype(int)
    return x, y


def ops_of(model: bytes) -> set[str]:
    return {n.op_type for n in onnx.load_from_string(model).graph.node}


@pytest.mark.parametrize("strategy", ["evolution", "random"])
def test_a_stage_space_search_writes_a_best_onnx_without_batch_norm(
    tmp_path: Path, strategy: str
) -> None:
    x, y = images(64)
    searcher = Searcher(
        image_space(), strategy=strategy, epochs=1, trials=4, out=tmp_path, bench=SMALL, seed=1
    )
    best = searcher.search(x, y, test_data=x[:16], test_labels=y[:16])
    assert isinstance(best.candidate, BlockCandidate)
    best_onnx = (tmp_path / "best.onnx").read_bytes()
    assert "BatchNormalization" not in ops_of(best_onnx)
    measured = [json.loads(line) for line in (tmp_path / "measurements.jsonl").open()]
    assert measured
    adds = [
        m["candidate"]
        for m in measured
        if "Add" in ops_of((tmp_path / "models" / f"{m['hash']}.onnx").read_bytes())
    ]
    assert adds, "no measured model holds a residual Add"
    kinds = {b.kind for m in measured for b in Candidate.decode(m["candidate"]).blocks}  # type: ignore[attr-defined]
    assert {"conv", "mbconv", "gap", "fc"} <= kinds
    for m in measured:
        assert Candidate.decode(m["candidate"]).hash == m["hash"]
    loss, accuracy = best.evaluate(x[:16], y[:16])
    assert 0.0 <= accuracy <= 1.0
    assert np.isfinite(loss)
    assert best.predict(x[:4]).shape == (4,)


def test_one_dimensional_signals_search_end_to_end(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 48, 3)).astype(np.float32)  # (N, L, C) windows
    y = (x[:, :, 0].mean(axis=1) > 0).astype(int)
    space = SearchSpace(
        input_shape=(48, 3),
        stages={
            "resolutions": [32, 48],
            "stage": [
                {"kind": "res", "depth": [1, 2], "widths": [8], "stride": 2},
                {"kind": "dwconv", "depth": 1, "widths": [8, 16], "kernels": [3, 5]},
            ],
        },
    )
    searcher = Searcher(space, epochs=1, trials=3, out=tmp_path, bench=SMALL, strategy="random")
    best = searcher.search(x, y)
    model = onnx.load_from_string((tmp_path / "best.onnx").read_bytes())
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 48]  # N x C x L at the data's own length
    assert "BatchNormalization" not in ops_of((tmp_path / "best.onnx").read_bytes())
    assert best.candidate.input_shape == (48, 3)
    card = json.loads(next((tmp_path / "targets").glob("*/model_card.json")).read_text())
    assert card["candidate"] == best.candidate.encode()


def test_the_block_net_and_its_onnx_agree_at_a_chosen_resolution() -> None:
    space = SearchSpace(
        input_shape=(20, 20, 3),
        num_classes=5,
        stages={"resolutions": [16], "stage": [{"kind": "mbconv", "depth": 1, "widths": [8]}]},
    )
    candidate = space.decode({})
    assert isinstance(candidate, BlockCandidate)
    assert candidate.resolution == 16
    assert candidate.encode().startswith("in20x20x3-r16-")
    net = build(candidate, seed=0)
    for module in net.modules():  # BN statistics that are not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    net.eval()
    x = torch.rand(3, 3, 20, 20)
    with torch.no_grad():
        expected = net(x).numpy()
    data = to_onnx(net)
    assert "Resize" in ops_of(data)
    assert "BatchNormalization" not in ops_of(data)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {"input": x[i : i + 1].numpy()})[0] for i in range(3)])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    back = from_onnx(data)
    assert back.candidate == candidate
    np.testing.assert_allclose(back(x).numpy(), expected, atol=1e-4)
    assert to_onnx(back) == data


def test_the_stage_space_round_trips_and_takes_the_predictor_and_the_supernet() -> None:
    space = image_space()
    again = SearchSpace.from_dict(json.loads(json.dumps(space.to_dict())))
    assert again == space
    assert dict(again.genes) == dict(space.genes)
    assert "stages" not in SearchSpace(input_shape=(8, 8, 1)).to_dict()  # flat: as before
    with pytest.raises(SpaceError, match="layer_types"):
        image_space(layer_types=["conv"])
    assert Searcher(image_space(), predictor=True).settings.predictor is True
    assert Searcher(image_space(), strategy="differentiable").settings.strategy == "differentiable"
    assert Searcher(image_space()).settings.predictor is False  # evolution's default: off


def test_block_and_flat_encodings_never_collide() -> None:
    flat = Candidate.decode("in8x8x1-conv_k3_s1_c16-pool_k2_s2-fc_u64-out10")
    assert type(flat) is Candidate
    block = Candidate.decode("in8x8x1-conv_k3_s1_c16_relu-pool_max_k2_s2-fc_u64_relu-out10")
    assert isinstance(block, BlockCandidate)
    assert [b.kind for b in block.blocks] == ["conv", "pool", "fc"]
    signal = Candidate.decode("in64x3-r32-res_s2_c8_relu6-gap-out4")
    assert isinstance(signal, BlockCandidate)
    assert signal.net_shape == (3, 32)
    assert signal.data_shape == (3, 64)
    with pytest.raises(SpaceError):
        Candidate.decode("in8x8x1-conv_k3_s1_c16_swish-out10")


def test_search_toml_takes_a_space_stages_table(tmp_path: Path) -> None:
    from search.cli.search_toml import check_toml, read_config

    config = tmp_path / "search.toml"
    config.write_text(
        "[space.stages]\nresolutions = [24, 32]\nfc_units = [32]\n"
        "[[space.stages.stage]]\nkind = 'mbconv'\ndepth = [1, 2]\nwidths = [16]\n"
    )
    file = read_config(config)
    check_toml(config, file)
    space = SearchSpace.from_dict({"input_shape": (32, 32, 3), **file["space"]})
    assert space.stage_space is not None
    assert space.stage_space.resolutions == (24, 32)
    config.write_text("[space.stages]\n[[space.stages.stage]]\nkind = 'mbconv'\ndepth = 1\n")
    with pytest.raises(SettingsError, match="needs 'widths'"):
        check_toml(config, read_config(config))


def test_a_block_net_compresses_to_int8_and_pruned_variants(tmp_path: Path) -> None:
    x, y = images(48)
    searcher = Searcher(
        image_space(), strategy="random", epochs=1, trials=1, out=tmp_path, bench=SMALL,
        compress=True,
    )  # fmt: skip
    searcher.search(x, y)
    folder = next((tmp_path / "targets").iterdir())
    report = json.loads((folder / "compression" / "compression.json").read_text())
    assert (folder / "compression" / "int8.onnx").is_file()
    names = [v["name"] for v in report["variants"]]
    assert names == ["fp32", "int8", "pruned25", "pruned25_int8", "pruned50", "pruned50_int8"]
    for variant in report["variants"]:  # each one measured on the board
        assert variant["error"] is None, variant
        assert variant["p50_ms"] > 0
    pruned = report["variants"][2]["details"]
    assert pruned["channels"][1] < pruned["channels"][0]  # channels physically removed


def test_a_stage_space_search_resumes(tmp_path: Path) -> None:
    x, y = images(48)

    def run(trials: int, resume: bool) -> None:
        Searcher(
            image_space(), strategy="random", epochs=1, trials=trials, out=tmp_path,
            bench=SMALL, resume=resume,
        ).search(x, y)  # fmt: skip

    run(2, False)
    run(3, True)
    record = json.loads((tmp_path / "search.json").read_text())
    assert record["space"]["stages"]["fc_units"] == [16, 32]
    lines = (tmp_path / "measurements.jsonl").read_text().splitlines()
    assert len({json.loads(line)["hash"] for line in lines}) >= 2


def test_a_block_candidate_costs_what_its_onnx_graph_holds() -> None:
    from search.cost import cost

    space = SearchSpace(
        input_shape=(20, 20, 3),
        num_classes=5,
        stages={"resolutions": [16], "stage": [{"kind": "mbconv", "depth": 1, "widths": [8]}]},
    )
    candidate = space.decode({})
    model = onnx.load_from_string(to_onnx(build(candidate)))
    weights = sum(
        int(np.prod(t.dims))
        for t in model.graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT
    )
    constants = 2  # relu6's Clip bounds
    c = cost(candidate)
    assert c.params == weights - constants
    assert c.flops == 2 * candidate.block_cost().macs
    assert c.peak_activation_bytes >= 4 * (3 * 20 * 20 + 3 * 16 * 16)  # the resize's two
