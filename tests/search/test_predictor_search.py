"""The predictor inside a search on `local`: the table reused from the cache, the logged
error recomputed from the measurements, candidates predicted far over budget not trained and
labelled as predicted (never as measured)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from search import InfeasibleBudgetError, Searcher, SearchSpace
from search.loop.report import trial_line
from search.predict import candidate_ops
from search.records import MEASURED, PREDICTED_OVER
from search.space import Candidate

from .strategy_support import ListStrategy

SMALL = {"min_time_s": 0.05, "min_iterations": 10, "warmup_min_s": 0.0}
SPACE = SearchSpace(input_shape=(8, 8, 1), num_layers=(1, 3), num_classes=10)
#: six small candidates (about the runtime's per-call cost on this machine) ...
SMALL_NETS = [
    "in8x8x1-conv_k3_s1_c4-out10",
    "in8x8x1-conv_k3_s2_c4-out10",
    "in8x8x1-pool_k2_s2-out10",
    "in8x8x1-conv_k3_s1_c4-pool_k2_s2-out10",
    "in8x8x1-fc_u16-out10",
    "in8x8x1-dw_k3_s1_c8-pool_k2_s2-out10",
]
#: ... and two about a hundred times slower (three 5x5 convolutions of 128 channels): even a
#: fit of the small ones that flattens to its floor (a tenth of the table) is over budget
BIG_NETS = [
    "in8x8x1-conv_k5_s1_c128-conv_k5_s1_c128-conv_k5_s1_c128-out10",
    "in8x8x1-conv_k5_s1_c128-conv_k5_s1_c128-conv_k5_s1_c128-fc_u64-out10",
]
BUDGET_MS = 0.06


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user cache of latency tables of this test's own."""
    path = tmp_path / "cache"
    monkeypatch.setenv("HWNAS_CACHE_DIR", str(path))
    return path


def run(out: Path, nets: list[str], digits: tuple[Any, Any], **kw: Any) -> Searcher:
    searcher = Searcher(
        SPACE,
        strategy=ListStrategy(nets),
        trials=len(nets),
        epochs=1,
        batch_size=64,
        out=out,
        bench=SMALL,
        progress=False,
        **kw,
    )
    searcher.search(*digits)
    return searcher


def distinct_ops(nets: list[str]) -> set[str]:
    return {op.key() for e in nets for op in candidate_ops(Candidate.decode(e))}


@pytest.mark.slow  # 11 s; the table's own reuse runs by default in test_predict.py
def test_a_second_search_on_the_same_board_measures_only_new_layers(
    tmp_path: Path, cache: Path, small_digits: tuple[Any, Any]
) -> None:
    first = run(tmp_path / "a", SMALL_NETS[:3], small_digits, predictor=True)
    assert first.result is not None
    assert first.result.forecast is not None
    table = first.result.forecast.table
    # every distinct layer of the three candidates, and the per-call overhead, once each
    assert table.measured == len(distinct_ops(SMALL_NETS[:3])) + 1
    assert (tmp_path / "a" / "latency_table.json").is_file()
    assert any(cache.rglob("*.json"))

    second = run(tmp_path / "b", SMALL_NETS[:3], small_digits, predictor=True)
    assert second.result is not None
    assert second.result.forecast is not None
    assert second.result.forecast.table.measured == 0  # all from the cache

    third = run(tmp_path / "c", SMALL_NETS[:4], small_digits, predictor=True)
    assert third.result is not None
    assert third.result.forecast is not None
    new = distinct_ops(SMALL_NETS[:4]) - distinct_ops(SMALL_NETS[:3])
    assert len(new) == 1  # the pool after the conv (its classifier input is known)
    assert third.result.forecast.table.measured == len(new)


@pytest.mark.slow  # ~12 s; the logged-error test searches with the predictor by default
def test_candidates_predicted_far_over_budget_are_not_trained_and_are_labelled_predicted(
    tmp_path: Path, cache: Path, small_digits: tuple[Any, Any]
) -> None:
    out = tmp_path / "run"
    searcher = run(
        out,
        SMALL_NETS + BIG_NETS,
        small_digits,
        predictor=True,
        constraints={"latency_ms": BUDGET_MS},
    )
    result = searcher.result
    assert result is not None
    assert result.forecast is not None
    skipped = [r for r in result.trials if r.outcome == PREDICTED_OVER]
    assert [r.candidate for r in skipped] == BIG_NETS
    margin = result.forecast.predictor.margin()
    assert margin is not None
    for r in skipped:
        assert r.train_s is None
        assert r.measurement is None
        assert r.latency_ms is None
        assert r.predicted_latency_ms is not None
        assert r.predicted_latency_ms > BUDGET_MS * (1 + margin)
        assert not (out / "models" / f"{r.hash}.onnx").exists()
        assert "predicted" in trial_line(r, "p50")
        assert "not measured" in trial_line(r, "p50")
    assert result.counts["predicted_over_budget"] == 2
    assert all(r.measurement is not None for r in result.pareto)
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}")
    attrs = [t.user_attrs for t in study.trials if t.user_attrs["outcome"] == PREDICTED_OVER]
    assert len(attrs) == 2
    assert all("latency_ms" not in a and "predicted" in a for a in attrs)
    summary = (out / "summary.md").read_text()
    assert "predicted over budget" in summary
    assert (out / "predictor.png").is_file()

    # the prediction was right: trained and measured, the first big net is over the budget
    check = Searcher(
        SPACE,
        strategy=ListStrategy(BIG_NETS[:1]),
        trials=1,
        epochs=1,
        batch_size=64,
        out=tmp_path / "check",
        bench=SMALL,
        progress=False,
        predictor=False,
        constraints={"latency_ms": BUDGET_MS},
    )
    with pytest.raises(InfeasibleBudgetError):
        check.search(*small_digits)
    assert check.result is not None
    (measured,) = check.result.trials
    assert measured.outcome == MEASURED
    assert measured.latency_ms is not None
    assert measured.latency_ms > BUDGET_MS


def test_the_logged_error_is_the_error_against_the_measurements(
    tmp_path: Path, cache: Path, small_digits: tuple[Any, Any]
) -> None:
    out = tmp_path / "run"
    searcher = run(out, SMALL_NETS, small_digits, predictor=True)
    assert searcher.result is not None
    assert searcher.result.forecast is not None
    lines = [json.loads(line) for line in (out / "measurements.jsonl").read_text().splitlines()]
    assert len(lines) == len(SMALL_NETS)
    rel = np.array(
        [
            abs(e["predicted"]["latency_ms"] - e["measurement"]["latency"]["median_ms"])
            / e["measurement"]["latency"]["median_ms"]
            for e in lines
        ]
    )
    error = searcher.result.forecast.predictor.error()
    assert error is not None
    assert error.n == len(SMALL_NETS)
    assert error.within_10 == pytest.approx(float(np.mean(rel <= 0.10)))
    assert error.median_abs_pct == pytest.approx(100 * float(np.median(rel)), rel=1e-6)
    # the first candidate was predicted from the table alone (nothing measured before it)
    assert lines[0]["predicted"]["model"] == "table"
    assert error.describe() in (out / "summary.md").read_text()
