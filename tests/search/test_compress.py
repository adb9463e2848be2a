"""Compression on `local`: a model from a short search on digits quantized and pruned, every
variant measured on the board; precision calibration that keeps sensitive layers in float;
the choice rule; `hwnas compress` on a user's ONNX model; bad files and settings refused."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from search import SearchedModel, Searcher, SearchSpace
from search.build import CandidateNet, build
from search.compress import (
    CalibrationDataError,
    CompressSettings,
    NoPowerMeterError,
    NotAClassifierError,
    OrtClassifier,
    Timing,
    Variant,
    calibrate_precision,
    choose,
    compress_onnx,
    compress_searched,
    inspect_classifier,
    load_npz,
)
from search.compress.prune import channel_count, prune
from search.compress.quantize import (
    StaticQuantizer,
    gemm_to_matmul,
    preprocess,
    quantize_dynamic_fc,
)
from search.errors import SettingsError
from search.measure import Board, bench_settings
from search.onnx_export import from_onnx, to_onnx
from search.space import Candidate
from search.training.data import Arrays, Split, split, to_nchw
from search.training.train import TrainSettings, train

SMALL = {"min_time_s": 0.05, "min_iterations": 10, "warmup_min_s": 0.0}
QUICK = CompressSettings(
    prune_ratios=(0.5,), methods=("minmax", "percentile"), rounds=2, fine_tune_epochs=1
)


@pytest.fixture(scope="module")
def digits_split(digits: Arrays) -> Split:
    return split(to_nchw(digits.x, (8, 8, 1)), digits.y, 0.2, 0)


@pytest.fixture(scope="module")
def search_split(digits: Arrays) -> Split:
    """The split the search below makes of its 1000 samples (validation 0.2, seed 0)."""
    return split(to_nchw(digits.x[:1000], (8, 8, 1)), digits.y[:1000], 0.2, 0)


def prunable_searcher(out: Path, *, epochs: int) -> Searcher:
    """A 2-trial random search of conv and fc layers (so both prune), measured briefly."""
    space = SearchSpace(
        input_shape=(8, 8, 1),
        num_layers=2,
        layer_types=["conv", "fc"],
        conv_channels=[16, 32],
        fc_sizes=[32, 64],
    )
    return Searcher(
        space, strategy="random", predictor=False, trials=2, epochs=epochs, batch_size=64,
        bench=SMALL, out=out, progress=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def searched(digits: Arrays, tmp_path_factory: pytest.TempPathFactory) -> SearchedModel:
    """The best model of a 2-trial search on digits (conv and fc layers, so both prune)."""
    searcher = prunable_searcher(tmp_path_factory.mktemp("search"), epochs=3)
    return searcher.search(digits.x[:1000], digits.y[:1000])


@pytest.fixture(scope="module")
def trained(digits_split: Split) -> CandidateNet:
    net = build(Candidate.decode("in8x8x1-conv_k3_s1_c16-pool_k2_s2-fc_u32-out10"))
    train(net, digits_split, TrainSettings(epochs=3, batch_size=64))
    return net


def _onnx_ops(data: bytes) -> set[str]:
    return {n.op_type for n in onnx.load_from_string(data).graph.node}


def _weight_shape(data: bytes, name: str) -> tuple[int, ...]:
    inits = {t.name: tuple(t.dims) for t in onnx.load_from_string(data).graph.initializer}
    return inits[name]


def test_a_searched_model_is_quantized_pruned_and_measured_on_local(
    searched: SearchedModel, search_split: Split, tmp_path: Path
) -> None:
    """The search's answer (a SearchedModel) goes in as the search will hand it over."""
    board = Board("local", bench=bench_settings(SMALL))
    try:
        result = compress_searched(searched, search_split, board, settings=QUICK, out=tmp_path)
    finally:
        board.close()
    names = [v.name for v in result.variants]
    assert names[:2] == ["fp32", "int8"]
    assert "pruned50" in names
    assert "pruned50_int8" in names
    fp32, int8, pruned = result.fp32, result.variant("int8"), result.variant("pruned50")
    # int8: QDQ nodes and int8 weights, a quarter of the size or so
    assert {"QuantizeLinear", "DequantizeLinear"} <= _onnx_ops(int8.model)
    assert int8.size_bytes < 0.5 * fp32.size_bytes
    assert int8.details["method"] in ("minmax", "percentile")
    # pruned: channels removed physically (every width smaller), candidate rewritten
    before, after = searched.candidate.layers, from_onnx(pruned.model).candidate.layers
    assert [a.width < b.width for a, b in zip(after, before, strict=True)] == [True] * len(before)
    assert pruned.size_bytes < 0.5 * fp32.size_bytes
    assert pruned.details["channels"][1] < pruned.details["channels"][0]
    assert from_onnx(pruned.model).candidate.encode() == pruned.details["candidate"]
    # every variant measured on local and evaluated
    for v in result.variants:
        assert v.timing.measured, v.timing.error
        assert v.timing.p50_ms is not None
        assert v.timing.p95_ms is not None
        assert 0 < v.timing.p50_ms <= v.timing.p95_ms
        assert len(v.timing.round_p50_ms) == QUICK.rounds
        assert v.timing.energy_mj is None
        assert v.timing.energy_reason
        assert v.accuracy is not None
        assert 0.5 < v.accuracy <= 1.0
    assert fp32.timing.ratio == 1.0
    # the choice: exactly one, never slower than fp32, each other one says why not
    assert sum(v.chosen for v in result.variants) == 1
    chosen = result.chosen
    assert chosen is fp32 or (chosen.timing.ratio is not None and chosen.timing.ratio < 1.0)
    if chosen is not fp32:  # faster in every round, and in the table's figure
        assert max(chosen.timing.round_ms) < min(fp32.timing.round_ms)
        assert chosen.timing.stat_ms is not None
        assert fp32.timing.stat_ms is not None
        assert chosen.timing.stat_ms < fp32.timing.stat_ms
    assert all(len(v.timing.round_ms) == QUICK.rounds for v in result.variants)
    for v in result.variants:
        if v.chosen:
            continue
        assert v.reason
        if v is not fp32 and v.timing.ratio is not None and v.timing.ratio > 1.0:
            assert v.reason.startswith(("slower than fp32", "accuracy drop")), v.reason
    # the report: files named by what they are, compression.json, the table
    report = json.loads((tmp_path / "compression.json").read_text())
    assert report["board"] == "local"
    assert report["chosen"] == chosen.name
    for row in report["variants"]:
        assert (tmp_path / row["file"]).read_bytes() == result.variant(row["name"]).model
        assert row["measured_on"] == "local"
        assert isinstance(row["accuracy_drop_points"], float)
        assert row["latency_ratio_vs_fp32"] > 0
        assert row["energy_mj"] is None
        assert row["energy_reason"]
        assert row["chosen"] == (row["name"] == chosen.name)
        assert row["chosen"] or row["reason"]
    table = result.table()
    assert all(name in table for name in names)
    assert "CHOSEN" in table
    print(table)


def test_sensitive_layers_are_kept_in_float_until_the_drop_is_within_tolerance(
    trained: CandidateNet, digits_split: Split
) -> None:
    """Scaling one conv channel by 1000 (and its fc weights by 1/1000) leaves the fp32
    function as it was but gives that activation a range int8 cannot share: quantizing the
    conv or the fc that reads it costs most of the accuracy; the classifier costs nothing."""
    net = build(trained.candidate)
    net.load_state_dict(trained.state_dict())
    x = digits_split
    with torch.no_grad():
        conv, fc = net.body[0], net.body[4]
        act = torch.relu(conv(torch.from_numpy(x.x_train[:256]))).mean((0, 2, 3))
        ch = int(act.argmax())
        conv.weight[ch] *= 1000.0
        conv.bias[ch] *= 1000.0
        fc.weight[:, ch * 16 : (ch + 1) * 16] /= 1000.0  # 16 = 4x4 pooled positions
    fp32 = to_onnx(net)
    info = inspect_classifier(fp32)

    def accuracy(model: bytes) -> float:
        return OrtClassifier(model, info).accuracy(x.x_val, x.y_val)

    base = accuracy(fp32)
    quantizer = StaticQuantizer(preprocess(fp32), info, x.x_train[:256])
    try:
        found = calibrate_precision(
            quantizer, accuracy, fp32=base, tolerance=1.0, methods=["minmax"]
        )
    finally:
        quantizer.close()
    all_int8 = found.methods["minmax"]
    assert 100 * (base - all_int8) > 20  # the damage is real
    assert found.sensitivity["body.0"] > 20
    assert found.sensitivity["body.4"] > 20
    assert found.sensitivity["body.6"] < 5
    assert set(found.excluded) == {"body.0", "body.4"}  # most sensitive first, then stop
    assert 100 * (base - found.accuracy) <= 1.0
    assert len(found.steps) == 2
    assert {"QuantizeLinear", "DequantizeLinear"} <= _onnx_ops(found.model)  # still int8


def _variant(
    name: str, acc: float, ratio: float | None, spread: float = 0.02, **timing: Any
) -> Variant:
    """A variant whose three rounds lie within ``spread`` (a fraction of fp32's 1 ms) of
    ``ratio`` ms: fp32's rounds are 0.98, 1.0, 1.02 ms."""
    rounds = [] if ratio is None else [ratio - spread, ratio, ratio + spread]
    t = Timing(p50_ms=ratio, p95_ms=ratio, ratio=ratio, stat_ms=ratio, round_ms=rounds, **timing)
    return Variant(name, name, b"x" * 100, accuracy=acc, timing=t)


def test_the_choice_is_the_fastest_within_tolerance_and_never_slower_than_fp32() -> None:
    variants = [
        _variant("fp32", 0.95, 1.0),
        _variant("int8", 0.95, 1.2),  # the most accurate, but slower
        _variant("pruned50", 0.927, 0.4),  # the fastest, but 2.3 points down
        _variant("pruned25", 0.945, 0.8),
        _variant("pruned25_int8", 0.948, 0.9),
        _variant("int8_dynamic", 0.95, 0.99),  # within the spread of the rounds
        _variant("pruned75", 0.95, 0.9, spread=0.2),  # faster, but its rounds reach fp32's
        _variant("broken", 0.95, None, error="the agent fell over"),
    ]
    chosen = choose(variants, tolerance=1.0)
    assert chosen.name == "pruned25"
    reasons = {v.name: v.reason for v in variants}
    assert reasons["int8"] == "slower than fp32 (p50 x1.20)"
    assert reasons["pruned50"] == "accuracy drop 2.3 points > tolerance 1"
    assert reasons["pruned25_int8"] == "not the fastest"
    assert reasons["int8_dynamic"].startswith("not faster than fp32 beyond the spread (p50 x0.99")
    assert reasons["pruned75"] == (
        "not faster than fp32 beyond the spread (p50 x0.90; rounds 0.7-1.1 ms vs fp32's "
        "0.98-1.02 ms)"
    )
    assert reasons["broken"] == "not measured: the agent fell over"
    assert reasons["fp32"] == "not the fastest (pruned25 is)"
    # every variant slower than fp32: fp32 stays, whatever their accuracy
    slow = [_variant("fp32", 0.9, 1.0), _variant("int8", 0.99, 1.01), _variant("p", 0.99, 1.5)]
    assert choose(slow, tolerance=5.0).name == "fp32"
    assert [v.reason for v in slow[1:]] == [
        "slower than fp32 (p50 x1.01)",
        "slower than fp32 (p50 x1.50)",
    ]


def test_energy_objective_picks_the_lowest_energy_and_needs_a_meter(tmp_path: Path) -> None:
    variants = [
        _variant("fp32", 0.95, 1.0, energy_mj=2.0),
        _variant("int8", 0.95, 0.7, energy_mj=1.5),
        _variant("pruned50", 0.95, 0.6, energy_mj=1.6),
    ]
    assert choose(variants, tolerance=1.0, objective="energy").name == "int8"
    assert variants[2].reason == "not the lowest energy"
    board = Board("local")
    try:  # refused before the model or the data are read
        with pytest.raises(NoPowerMeterError, match="objective energy needs a power meter"):
            compress_onnx(
                b"never read",
                board,
                calibration=tmp_path / "never-read.npz",
                settings=CompressSettings(objective="energy"),
            )
    finally:
        board.close()


def test_pruning_removes_channels_physically_and_the_export_round_trips(
    digits_split: Split,
) -> None:
    net = build(Candidate.decode("in8x8x1-conv_k3_s1_c16-dw_k3_s1_c16-pool_k2_s2-fc_u32-out10"))
    for importance in ("l1", "taylor"):
        small = prune(net, 0.5, importance=importance, data=digits_split)
        assert (
            small.candidate.encode() == "in8x8x1-conv_k3_s1_c8-dw_k3_s1_c8-pool_k2_s2-fc_u16-out10"
        )
        assert channel_count(small) == channel_count(net) // 2
        assert sum(p.numel() for p in small.parameters()) < 0.4 * sum(
            p.numel() for p in net.parameters()
        )
        data = to_onnx(small)
        sample = digits_split.x_val[:8]
        with torch.no_grad():
            want = small(torch.from_numpy(sample)).numpy()
        got = OrtClassifier(data, inspect_classifier(data)).logits(sample)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert net.candidate.layers[0].width == 16  # the original is left as it was
    with pytest.raises(SettingsError, match="in \\(0, 1\\)"):
        prune(net, 1.0)


def test_dynamic_int8_quantizes_the_fully_connected_layers(
    trained: CandidateNet, digits_split: Split
) -> None:
    fp32 = to_onnx(trained)
    info = inspect_classifier(fp32)
    pre = preprocess(fp32)
    plain = onnx.load_from_string(pre)
    as_matmul = gemm_to_matmul(onnx.load_from_string(pre))
    assert "Gemm" in {n.op_type for n in plain.graph.node}
    assert "Gemm" not in {n.op_type for n in as_matmul.graph.node}
    sample = digits_split.x_val[:16]
    same = OrtClassifier(as_matmul.SerializeToString(), info).logits(sample)
    np.testing.assert_allclose(same, OrtClassifier(fp32, info).logits(sample), rtol=1e-4, atol=1e-5)
    dyn = quantize_dynamic_fc(pre)
    ops = _onnx_ops(dyn)
    assert "DynamicQuantizeLinear" in ops
    assert "MatMulInteger" in ops
    assert "ConvInteger" not in ops  # convolutions stay float
    classifier = OrtClassifier(dyn, info)
    assert classifier._batched is None  # batch-dependent scales: evaluated one at a time
    fp32_acc = OrtClassifier(fp32, info).accuracy(digits_split.x_val, digits_split.y_val)
    assert abs(classifier.accuracy(digits_split.x_val, digits_split.y_val) - fp32_acc) < 0.02


# --- bad inputs ------------------------------------------------------------------------


def _save(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y": np.zeros(4, int)}, r"no array 'x' \(it has \['y'\]\); give x shaped \(N, 1, 8, 8\)"),
        ({"x": np.zeros((4, 1, 8, 8), np.float32)}, r"no array 'y' \(it has \['x'\]\)"),
        (
            {"x": np.zeros((4, 8, 8, 1), np.float32), "y": np.zeros(4, int)},
            r"samples of shape \(8, 8, 1\), the model takes \(1, 8, 8\).*channels-last",
        ),
        (
            {"x": np.zeros((4, 1, 5, 5), np.float32), "y": np.zeros(4, int)},
            r"samples of shape \(1, 5, 5\), the model takes \(1, 8, 8\)",
        ),
        (
            {"x": np.full((4, 1, 8, 8), np.nan, np.float32), "y": np.zeros(4, int)},
            r"x holds 256 non-finite values",
        ),
        (
            {"x": np.zeros((4, 1, 8, 8), np.float32), "y": np.array([0, 1, 2, 12])},
            r"label 12 out of range for a model with 10 outputs",
        ),
        (
            {"x": np.zeros((4, 1, 8, 8), np.float32), "y": np.zeros(3, int)},
            r"x holds 4 samples but y 3 labels",
        ),
        (
            {"x": np.zeros((4, 1, 8, 8), np.float32), "y": np.full(4, 0.5)},
            r"labels must be integers",
        ),
    ],
    ids=["no-x", "no-y", "channels-last", "wrong-size", "nan", "label-range", "count", "float-y"],
)
def test_a_bad_calibration_file_gets_one_clear_error(
    trained: CandidateNet, tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    info = inspect_classifier(to_onnx(trained))
    path = _save(tmp_path / "calib.npz", **arrays)
    with pytest.raises(CalibrationDataError, match=message):
        load_npz(path, info)
    (tmp_path / "junk.npz").write_text("not an npz")
    with pytest.raises(CalibrationDataError, match="cannot read"):
        load_npz(tmp_path / "junk.npz", info)


def _conv_only_model() -> bytes:
    """A valid ONNX model whose output is a feature map, not [N, classes]."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["out"], pads=[1, 1, 1, 1])],
        "conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    return bytes(model.SerializeToString())


def test_an_onnx_file_that_is_not_a_classifier_is_refused() -> None:
    with pytest.raises(
        NotAClassifierError, match=r"output has shape \[1, 4, 8, 8\].*\[N, classes\]"
    ):
        inspect_classifier(_conv_only_model(), "conv.onnx")
    with pytest.raises(NotAClassifierError, match=r"junk\.onnx is not an ONNX model"):
        inspect_classifier(b"\x00\x01 not protobuf at all", "junk.onnx")


# --- hwnas compress ----------------------------------------------------------------------


@pytest.fixture
def hwnas() -> Any:
    """``hwnas`` in-process (the compress verb comes through its entry point)."""
    from hwnas_bench.cli.main import main

    return main


def _user_model(net: CandidateNet, path: Path) -> Path:
    """The search's export with its metadata removed: a model the search did not make."""
    model = onnx.load_from_string(to_onnx(net))
    del model.metadata_props[:]
    path.write_bytes(model.SerializeToString())
    return path


def _npz(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    return _save(path, x=x, y=y)


def test_hwnas_compress_quantizes_a_user_model_and_writes_the_variants(
    hwnas: Any, trained: CandidateNet, digits_split: Split, tmp_path: Path, capsys: Any
) -> None:
    model = _user_model(trained, tmp_path / "mine.onnx")
    calib = _npz(tmp_path / "calib.npz", digits_split.x_train[:200], digits_split.y_train[:200])
    evals = _npz(tmp_path / "eval.npz", digits_split.x_val, digits_split.y_val)
    out = tmp_path / "out"
    argv = ["compress", str(model), "--target", "local", "--calibration", str(calib)]
    argv += ["--eval", str(evals), "--out", str(out), "--rounds", "1", "--min-time", "0.05"]
    argv += ["--methods", "minmax", "--tolerance", "1.0"]
    assert hwnas(argv) == 0
    captured = capsys.readouterr()
    report = json.loads((out / "compression.json").read_text())
    names = [v["name"] for v in report["variants"]]
    assert names[:2] == ["fp32", "int8"]
    assert not any(n.startswith("pruned") for n in names)
    assert (out / "int8.onnx").is_file()
    assert "not a model the search made" in " ".join(report["notes"])
    assert report["evaluation"] == {"source": str(evals), "samples": len(digits_split.x_val)}
    for name in names:
        assert name in captured.out
    assert "CHOSEN" in captured.out
    assert f"Chosen: {report['chosen']}" in captured.out


def test_hwnas_compress_prunes_a_model_the_search_made(
    hwnas: Any, trained: CandidateNet, digits_split: Split, tmp_path: Path
) -> None:
    model = tmp_path / "best.onnx"
    model.write_bytes(to_onnx(trained))
    calib = _npz(tmp_path / "calib.npz", digits_split.x_train, digits_split.y_train)
    evals = _npz(tmp_path / "eval.npz", digits_split.x_val, digits_split.y_val)
    argv = ["compress", str(model), "--calibration", str(calib), "--eval", str(evals)]
    argv += ["--prune", "50", "--rounds", "1", "--min-time", "0.05", "--methods", "minmax", "-q"]
    assert hwnas(argv) == 0
    out = tmp_path / "best-compressed"  # the default --out
    names = [v["name"] for v in json.loads((out / "compression.json").read_text())["variants"]]
    assert "pruned50" in names
    assert "pruned50_int8" in names
    assert (out / "pruned50_int8.onnx").is_file()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-x", "no array 'x'"),
        ("shape", r"samples of shape \(8, 8, 1\)"),
        ("energy", "energy is wanted .* board local has no power meter"),
        ("not-classifier", r"output has shape \[1, 4, 8, 8\]"),
        ("tolerance", "tolerance must be >= 0"),
        ("missing-model", r"cannot read .*gone\.onnx: .*No such file"),
        ("missing-calibration", r"cannot read .*gone\.npz"),
        ("missing-eval", r"cannot read .*gone\.npz"),
    ],
)
def test_hwnas_compress_refuses_bad_input_with_one_line_and_exit_2(
    hwnas: Any, trained: CandidateNet, tmp_path: Path, capsys: Any, case: str, message: str
) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(_conv_only_model() if case == "not-classifier" else to_onnx(trained))
    x = np.zeros((8, 8, 8, 1) if case == "shape" else (8, 1, 8, 8), np.float32)
    arrays = {"y": np.zeros(8, int)} if case == "no-x" else {"x": x, "y": np.zeros(8, int)}
    calib = _save(tmp_path / "c.npz", **arrays)
    gone_model, gone_data = tmp_path / "gone.onnx", tmp_path / "gone.npz"
    if case == "missing-model":
        model = gone_model
    if case == "missing-calibration":
        calib = gone_data
    argv = ["compress", str(model), "--calibration", str(calib), "--out", str(tmp_path / "o")]
    if case == "missing-eval":
        argv += ["--eval", str(gone_data)]
    if case == "energy":
        argv += ["--objective", "energy"]
    if case == "tolerance":
        argv += ["--tolerance", "-1"]
    assert hwnas(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("hwnas: error: ")
    assert re.search(message, err[0]), err[0]


def test_hwnas_compress_refuses_an_unknown_target_before_calibrating(
    hwnas: Any, trained: CandidateNet, tmp_path: Path, capsys: Any
) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(to_onnx(trained))
    calib = _save(tmp_path / "c.npz", x=np.zeros((8, 8, 8, 1), np.float32), y=np.zeros(8, int))
    out = tmp_path / "o"
    argv = ["compress", str(model), "--calibration", str(calib), "--out", str(out)]
    assert hwnas([*argv, "--target", "nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "no board named 'nosuch'" in err[0], err
    assert not out.exists()  # nothing was calibrated or written before the refusal
