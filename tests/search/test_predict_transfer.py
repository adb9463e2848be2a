"""The warm start on another board (issue 20 item 5): a table measured on one board predicts
a second one after 10 calibration measurements there, >= 90% within ±10%."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from search import SearchSpace
from search.blocks import StageSpace, StageSpec
from search.build import build
from search.measure import SEARCH_BENCH, Board, latency_of
from search.onnx_export import to_onnx
from search.predict import LatencyTable, Predictor, PredictorError, TableEntry, candidate_ops
from search.predict.ops import op_features
from search.predict.transfer import TransferredPredictor
from search.space import Candidate

CALIBRATION = 10
TARGET = 0.90


def space() -> SearchSpace:
    stages = (
        StageSpec("conv", (1, 1), (8, 16), stride=2),
        StageSpec("mbconv", (1, 2), (16, 24), kernels=(3, 5), expansions=(3, 6)),
        StageSpec("mbconv", (1, 2), (24, 32), stride=2, kernels=(3, 5), expansions=(3, 6)),
    )
    return SearchSpace(
        input_shape=(32, 32, 3), stages=StageSpace(stages=stages, stem=None), num_classes=10
    )


def draw(n: int, seed: int = 0) -> list[Candidate]:
    s = space()
    rng = np.random.default_rng(seed)
    found: dict[str, Candidate] = {}
    while len(found) < n:
        c = s.decode({g: v[rng.integers(len(v))] for g, v in s.genes.items()})
        found.setdefault(c.hash, c)
    return list(found.values())


def synthetic_table(candidates: list[Candidate]) -> LatencyTable:
    """Each op's entry: the overhead plus a time that follows its MACs and its nodes."""
    entries = {"overhead": TableEntry("overhead", 0.012, None, 100, "now")}
    for c in candidates:
        for op in candidate_ops(c):
            macs, _, moved, nodes = op_features(op)
            ms = 0.012 + 2e-7 * macs + 1e-6 * moved + 0.002 * nodes
            entries[op.key()] = TableEntry(op.key(), ms, None, 100, "now")
    return LatencyTable("a", "p50", entries)


def test_a_table_of_one_board_predicts_another_after_ten_measurements() -> None:
    """Board B runs every model 1.7x slower than A's table says, plus 30 µs, measured with
    3% noise and, now and then, in a 0.6x speed state: the calibration finds the line."""
    candidates = draw(40)
    source = Predictor(synthetic_table(candidates))
    rng = np.random.default_rng(1)
    truth = np.asarray([0.03 + 1.7 * source.predict(c).latency_ms for c in candidates])
    measured = truth * rng.normal(1, 0.03, len(truth))
    measured[[2, 7]] *= 0.6  # two of the calibration measurements in a fast speed state
    warm = TransferredPredictor(source)
    for c, y in zip(candidates[:CALIBRATION], measured[:CALIBRATION], strict=True):
        warm.observe(warm.predict(c), c, float(y), None)
    assert warm.fit.model in ("scale", "affine")
    assert warm.predict(candidates[0]).model == f"transfer {warm.fit.model}"
    assert warm.predict(candidates[0]).energy_mj is None
    rest = candidates[CALIBRATION:]
    error = PredictorError.of(
        [warm.predict(c).latency_ms for c in rest], list(measured[CALIBRATION:])
    )
    assert error is not None
    assert error.within_10 >= TARGET
    assert "first board" in warm.describe()
    # the source predictor is left as it was
    assert source.observations == []


@pytest.mark.slow  # about two minutes: a table filled on one board, 70 models on the other
def test_a_table_measured_at_one_thread_predicts_the_board_at_two(tmp_path: Path) -> None:
    """Two `local` boards that run at different speeds: one onnxruntime thread, and two.
    Judged against the target where the second board agrees with itself (its models
    measured twice): a host too busy for two measurements of one model to agree >= 90% of
    the time within ±10% cannot tell a calibration's error from its own, so there the
    calibration's median error is held to twice the board's own (at least 10%)."""
    candidates = draw(40, seed=2)
    one = Board("local", bench=SEARCH_BENCH, purpose="test warm start (1 thread)")
    two = Board("local", bench=replace(SEARCH_BENCH, threads=2), purpose="warm start (2)")
    one.connect()
    try:
        table = LatencyTable.for_board(one, "p50", tmp_path / "a", cache_dir=tmp_path)
        table.ensure([op for c in candidates for op in candidate_ops(c)], one)
    finally:
        one.close()
    two.connect()
    try:
        models = [to_onnx(build(c)) for c in candidates]
        measured = [latency_of(two.measure(m, name="candidate"), "p50") for m in models]
        again = [latency_of(two.measure(m, name="again"), "p50") for m in models[CALIBRATION:]]
    finally:
        two.close()
    warm = TransferredPredictor(Predictor(table))
    for c, y in zip(candidates[:CALIBRATION], measured[:CALIBRATION], strict=True):
        warm.observe(warm.predict(c), c, y, None)
    rest = candidates[CALIBRATION:]
    error = PredictorError.of([warm.predict(c).latency_ms for c in rest], measured[CALIBRATION:])
    ceiling = PredictorError.of(again, measured[CALIBRATION:])
    assert error is not None
    assert ceiling is not None
    print(
        f"warm start, 1 thread -> 2 threads: {error.describe()}; {warm.describe()}; a second "
        f"measurement on the 2-thread board: {ceiling.describe()}"
    )
    if ceiling.within_10 >= TARGET:
        assert error.within_10 >= TARGET, error.describe()
    else:  # the board disagrees with itself more than the target allows: the calibration is
        # held to the board's own spread (an uncalibrated 1-thread table is off by ~40%)
        bound = max(10.0, 2 * ceiling.median_abs_pct)
        assert error.median_abs_pct <= bound, (error.describe(), ceiling.describe())
