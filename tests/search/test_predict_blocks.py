"""The predictor on the stage space's block candidates (issue 19 item 6): the table measures
each block (and the resize to a resolution, and the classifier) as a one-op model with the
full net's nodes, a search with the predictor predicts every candidate before measuring it,
logs its error, and skips those predicted far over budget, on the real `local` board."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from search import Searcher, SearchSpace
from search.blocks import BlockCandidate, StageSpace, StageSpec
from search.blocks.table import candidate_table_ops, op_cost
from search.build import build
from search.onnx_export import to_onnx
from search.predict import LatencyTable, Predictor, candidate_ops
from search.predict.ops import op_features, op_onnx
from search.predict.table import TableEntry
from search.records import MEASURED, PREDICTED_OVER
from search.space import Candidate

from .blocks_support import run_onnx
from .strategy_support import ListStrategy

SMALL = {"min_time_s": 0.05, "min_iterations": 10, "warmup_min_s": 0.0}
#: small block nets on 16x16x3 images (one at resolution 8: a Resize node first) ...
SMALL_NETS = [
    "in16x16x3-conv_k3_s2_c8_relu6-mb_e3_k3_s1_c8_relu6-gap-out2",
    "in16x16x3-r8-conv_k3_s2_c8_relu6-mb_e3_k3_s1_c8_relu6-gap-out2",
    "in16x16x3-conv_k3_s2_c8_relu6-mb_e3_k5_s1_c16_relu6-gap-out2",
    "in16x16x3-conv_k3_s2_c16_relu6-mb_e3_k3_s1_c16_relu6-mb_e3_k3_s1_c16_relu6-gap-out2",
    "in16x16x3-conv_k3_s2_c8_relu6-gap-out2",
]
#: ... and two some hundred times slower (768-channel inverted bottlenecks at full size)
BIG_NETS = [
    "in16x16x3-conv_k3_s1_c128_relu6-mb_e6_k7_s1_c128_relu6-mb_e6_k7_s1_c128_relu6-gap-out2",
    "in16x16x3-conv_k3_s1_c128_relu6-mb_e6_k5_s1_c128_relu6-mb_e6_k5_s1_c128_relu6-gap-out2",
]
BUDGET_MS = 0.5


def stage_space() -> SearchSpace:
    stages = (
        StageSpec("conv", (1, 1), (8, 16), stride=2),
        StageSpec("mbconv", (1, 2), (8, 16), kernels=(3, 5), expansions=(3,)),
    )
    space = StageSpace(stages=stages, resolutions=(8, 16))
    return SearchSpace(input_shape=(16, 16, 3), stages=space, num_classes=2)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("HWNAS_CACHE_DIR", str(path))
    return path


def images(n: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((n, 16, 16, 3), dtype=np.float32)
    return x, (x[:, :8].mean(axis=(1, 2, 3)) > x[:, 8:].mean(axis=(1, 2, 3))).astype(int)


def nodes_of(model: bytes) -> list[str]:
    return [n.op_type for n in onnx.load_from_string(model).graph.node]


def test_a_block_candidates_ops_are_one_op_models_of_the_nets_own_nodes() -> None:
    c = Candidate.decode(SMALL_NETS[1])
    assert isinstance(c, BlockCandidate)
    ops = candidate_ops(c)
    assert ops == candidate_table_ops(c)
    assert [op.kind for op in ops] == ["resize", "conv", "mbconv", "gap", "classifier"]
    assert ops[0].key() == "resize_r8@3x16x16"
    whole = nodes_of(to_onnx(build(c)))
    parts: list[str] = []
    rng = np.random.default_rng(0)
    for op in ops:
        model = op_onnx(op)
        kinds = nodes_of(model)
        parts += kinds
        # its features count the nodes it runs, as the net's analytic cost does
        assert op_features(op)[3] == len(kinds) == len(op_cost(op).live)
        out = run_onnx(model, rng.random((1, *op.in_shape), dtype=np.float32))
        assert np.all(np.isfinite(out))
    # the ops together hold exactly the whole net's nodes
    assert sorted(parts) == sorted(whole)
    assert "BatchNormalization" not in parts
    resized = run_onnx(op_onnx(ops[0]), np.ones((1, 3, 16, 16), dtype=np.float32))
    assert resized.shape == (1, 3, 8, 8)
    # no resize at the data's own size
    same = Candidate.decode(SMALL_NETS[0])
    assert "resize" not in [op.kind for op in candidate_ops(same)]


def test_the_predictor_predicts_a_block_candidate_from_its_table() -> None:
    c = Candidate.decode(SMALL_NETS[3])
    ops = candidate_ops(c)
    entries = {"overhead": TableEntry("overhead", 0.01, None, 100, "now")}
    for i, op in enumerate(ops):
        entries[op.key()] = TableEntry(op.key(), 0.01 + 0.002 * (i + 1), None, 100, "now")
    table = LatencyTable("fp", "p50", entries)
    predictor = Predictor(table)
    p = predictor.predict(c)
    assert p.model == "table"
    # two mbconvs of one token on one input share an entry, counted twice
    assert p.prior_ms == pytest.approx(table.sum_ms(ops))
    f = predictor.features(c)
    assert f[-1] == len(ops)  # the number of ops
    predictor.observe(p, c, 1.1 * p.prior_ms, None)
    assert predictor.observations[0].sizes == tuple(predictor.sizes(c))


def search(out: Path, nets: list[str], **kw: object) -> Searcher:
    searcher = Searcher(
        stage_space(),
        strategy=ListStrategy(nets),
        trials=len(nets),
        epochs=1,
        batch_size=32,
        out=out,
        bench=SMALL,
        progress=False,
        predictor=True,
        **kw,  # type: ignore[arg-type]
    )
    searcher.search(*images())
    return searcher


def test_a_stage_space_search_with_the_predictor_predicts_logs_and_skips(
    tmp_path: Path, cache: Path
) -> None:
    out = tmp_path / "run"
    searcher = search(out, SMALL_NETS + BIG_NETS, budgets={"latency_ms": BUDGET_MS})
    result = searcher.result
    assert result is not None
    assert result.forecast is not None
    table = result.forecast.table
    # the table holds every op of every candidate, the blocks' own tokens as keys
    keys = {op.key() for e in SMALL_NETS + BIG_NETS for op in candidate_ops(Candidate.decode(e))}
    assert keys <= set(table.entries)
    assert "resize_r8@3x16x16" in table.entries
    saved = json.loads((out / "latency_table.json").read_text())
    assert keys <= set(saved["entries"])
    # every measured candidate was predicted before its measurement, and the logged error
    # is the error against those measurements
    measured = [r for r in result.trials if r.outcome == MEASURED]
    assert [r.candidate for r in measured] == SMALL_NETS
    assert all(r.predicted is not None for r in measured)
    lines = [json.loads(line) for line in (out / "measurements.jsonl").read_text().splitlines()]
    rel = [
        abs(e["predicted"]["latency_ms"] - e["measurement"]["latency"]["median_ms"])
        / e["measurement"]["latency"]["median_ms"]
        for e in lines
    ]
    error = result.forecast.predictor.error()
    assert error is not None
    assert error.n == len(SMALL_NETS)
    assert error.within_10 == pytest.approx(float(np.mean(np.asarray(rel) <= 0.10)))
    # the big nets: predicted far over budget, not trained, not measured
    skipped = [r for r in result.trials if r.outcome == PREDICTED_OVER]
    assert [r.candidate for r in skipped] == BIG_NETS
    margin = result.forecast.predictor.margin()
    assert margin is not None
    for r in skipped:
        assert r.latency_ms is None
        assert r.predicted_latency_ms is not None
        assert r.predicted_latency_ms > BUDGET_MS * (1 + margin)
    assert result.counts["predicted_over_budget"] == 2
    assert "Latency predictor" in (out / "summary.md").read_text()

    # a resume replays the block candidates' log into a fresh predictor, measuring nothing
    again = search(out, SMALL_NETS + BIG_NETS, budgets={"latency_ms": BUDGET_MS}, resume=True)
    assert again.result is not None
    assert again.result.forecast is not None
    assert again.result.forecast.table.measured == 0
    replayed = again.result.forecast.predictor.error()
    assert replayed is not None
    assert replayed.n == len(SMALL_NETS)
    assert replayed.within_10 == error.within_10
