"""Feasibility decided with confidence: a candidate whose rounds straddle the latency budget
is measured again until its side is known at 95%, or is ``undecided`` (never within).

The synthetic board is the real ``local`` Board whose rounds report the test's own figures
(Measurements of the agent's shape, from one real measurement): only the figures are the
test's, every other step (the loop, the study, the records, the log, deploy's verdict) is
the product's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest

from hwnas_bench import Measurement
from search.loop.run import Search
from search.loop.run_dir import RunDir
from search.measure import Board, bench_settings, latency_of
from search.measure.confidence import (
    MAX_ROUNDS,
    OVER,
    UNDECIDED,
    WITHIN,
    Verdict,
    interval,
    judge,
    measure_decided,
)
from search.records import TrialRecord
from search.settings import Budgets, MeasuredFigures, SearchSettings
from search.space import SearchSpace
from search.training.data import split
from search.training.settings import TrainSettings

from .strategy_support import ListStrategy

SPACE = SearchSpace(input_shape=(8, 8, 1), num_layers=(1, 2), num_classes=10)
NET = "in8x8x1-conv_k3_s1_c4-out10"
FAST = {"min_time_s": 0.03, "min_iterations": 5, "warmup_min_s": 0.0, "warmup_runs": 1}
BUDGET = 1.0


def test_rounds_far_from_the_budget_decide_at_once() -> None:
    assert judge([0.50, 0.52, 0.51], BUDGET, "p50").side == WITHIN
    assert judge([1.50, 1.52, 1.51], BUDGET, "p50").side == OVER
    near = judge([0.97, 1.02, 0.99], BUDGET, "p50")
    assert near.side == UNDECIDED
    assert near.low is not None
    assert near.high is not None
    assert near.low < BUDGET < near.high
    assert near.slack > 0  # undecided is never within: the study is told a violation
    assert judge([0.5], BUDGET, "p50").side == UNDECIDED  # one round: no interval


def test_the_interval_is_students_t_on_the_rounds() -> None:
    low, high = interval([1.0, 2.0, 3.0]) or (0.0, 0.0)
    # mean 2, s = 1, t(0.975, 2) = 4.303: 2 +- 4.303 / sqrt(3)
    assert low == pytest.approx(2 - 4.3027 / 3**0.5, abs=1e-3)
    assert high == pytest.approx(2 + 4.3027 / 3**0.5, abs=1e-3)
    assert interval([1.0, float("nan")]) is None


def test_the_median_round_not_the_mean_sides_with_the_record() -> None:
    # the interval's top is under the budget but the median round over it: not within
    v = judge([0.2] * 6 + [1.01] * 7, 1.005, "p50")
    assert v.side != WITHIN


def test_a_verdict_survives_its_record() -> None:
    v = judge([0.97, 1.02, 0.99], BUDGET, "p95")
    assert Verdict.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    assert Verdict.from_dict({"side": "maybe"}) is None
    assert Verdict.from_dict(None) is None


@pytest.fixture(scope="module")
def template() -> Iterator[Measurement]:
    """One real measurement from the `local` agent: the shape every scripted round copies."""
    from search.build import build
    from search.onnx_export import to_onnx
    from search.space import Candidate

    board = Board("local", bench=bench_settings(FAST), rounds=1)
    try:
        yield board.measure(to_onnx(build(Candidate.decode(NET))))
    finally:
        board.close()


def at(template: Measurement, ms: float) -> Measurement:
    lat = replace(template.latency, median_ms=ms, p95_ms=ms * 1.1, mean_ms=ms, min_ms=ms * 0.9)
    return replace(template, latency=lat)


class ScriptedRounds(Board):
    """The real `local` Board whose rounds report the given p50 figures, in order (then
    the last batch again); it counts its leases."""

    def __init__(self, template: Measurement, batches: list[list[float]]) -> None:
        super().__init__("local", bench=bench_settings(FAST))
        self.template, self.batches, self.leases = template, batches, 0

    def measure_rounds(self, model: bytes, *, name: str = "candidate") -> list[Measurement]:
        figures = self.batches[min(self.leases, len(self.batches) - 1)]
        self.leases += 1
        return [at(self.template, ms) for ms in figures]


def test_a_straddling_candidate_is_measured_again_until_its_side_is_known(
    template: Measurement,
) -> None:
    board = ScriptedRounds(template, [[0.97, 1.02, 0.99], [0.92, 0.93, 0.92], [0.92, 0.91, 0.92]])
    decided = board.measure_decided(b"model", BUDGET, "p50")
    assert decided.verdict is not None
    assert decided.verdict.side == WITHIN
    assert board.leases == 3
    assert len(decided.rounds) == 9
    assert len(decided.verdict.rounds) == 9
    # the record's figure is the median round's, and it sides with the verdict
    assert latency_of(decided.measurement, "p50") == pytest.approx(0.92)


def test_a_candidate_on_the_budget_is_undecided_after_the_cap(template: Measurement) -> None:
    board = ScriptedRounds(template, [[0.96, 1.04, 1.0]])
    decided = board.measure_decided(b"model", BUDGET, "p50")
    assert decided.verdict is not None
    assert decided.verdict.side == UNDECIDED
    assert len(decided.rounds) == MAX_ROUNDS
    figures = MeasuredFigures.of(decided.measurement, "p50", decided.verdict)
    (violation,) = Budgets(latency_ms=BUDGET).violations(figures)
    assert violation.reason.startswith("undecided: the 95% interval of p50 over 12 rounds")
    assert Budgets(latency_ms=BUDGET).slack(figures)["latency_ms"] > 0


def test_without_a_budget_one_batch_is_measured(template: Measurement) -> None:
    board = ScriptedRounds(template, [[0.97, 1.02, 0.99]])
    decided = board.measure_decided(b"model", None, "p50")
    assert decided.verdict is None
    assert board.leases == 1


def test_a_batch_that_comes_back_empty_ends_the_measuring(template: Measurement) -> None:
    batches = iter([[at(template, 0.97), at(template, 1.03)], []])
    decided = measure_decided(lambda: next(batches), BUDGET, "p50", lambda m: m.latency.median_ms)
    assert decided.verdict is not None
    assert decided.verdict.side == UNDECIDED
    assert len(decided.rounds) == 2


def _search(board: Board, tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> Search:
    data = split(digits[0].reshape(-1, 1, 8, 8), digits[1], 0.2, 0)
    settings = SearchSettings(
        trials=1,
        budgets=Budgets(latency_ms=BUDGET),
        train=TrainSettings(epochs=1, batch_size=64, final_epochs=0),
    )
    return Search(
        SPACE,
        data,
        settings,
        boards={"local": board},
        strategy=ListStrategy([NET]),
        run_dir=RunDir(tmp_path / "run", None, "search"),
    )


def test_the_search_records_every_round_and_an_undecided_trial_is_infeasible(
    template: Measurement, small_digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    board = ScriptedRounds(template, [[0.96, 1.04, 1.0]])
    result = _search(board, tmp_path, small_digits).run_search()
    (rec,) = result.trials
    assert rec.outcome == "measured", rec.reason
    assert rec.feasible is False
    assert rec.reason is not None
    assert rec.reason.startswith("undecided")
    assert rec.latency_verdict is not None
    assert len(rec.latency_verdict.rounds) == MAX_ROUNDS
    # the log keeps every round, with its statistics, and the verdict
    (entry,) = [json.loads(line) for line in (tmp_path / "run" / "measurements.jsonl").open()]
    assert len(entry["rounds"]) == MAX_ROUNDS
    assert entry["rounds"][0]["latency"]["median_ms"] == pytest.approx(0.96)
    assert entry["latency_verdict"]["side"] == UNDECIDED
    # the study was told a violation, never 0
    study = optuna.load_study(
        study_name="search", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    )
    (trial,) = study.trials
    constraints = {k: v for k, v in trial.system_attrs.items() if "constraint" in k}
    assert constraints
    assert all(v > 0 for v in constraints.values()), constraints
    # and the record reads back as it was
    again = TrialRecord.from_attrs(0, trial.user_attrs, rec.measurement)
    assert again.latency_verdict == rec.latency_verdict


def test_a_resumed_run_keeps_the_verdict_it_logged(
    template: Measurement, small_digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    first = ScriptedRounds(template, [[0.97, 1.02, 0.99], [0.92, 0.93, 0.92]])
    _search(first, tmp_path, small_digits).run_search()
    # a study without its trial (as after a kill between the log and the tell): the log
    # is read back, nothing is measured again, and the verdict is the logged one
    (tmp_path / "run" / "study.db").unlink()
    again = ScriptedRounds(template, [[5.0, 5.0, 5.0]])
    (rec,) = _search(again, tmp_path, small_digits).run_search().trials
    assert again.leases == 0
    assert rec.feasible is True
    assert rec.latency_verdict is not None
    assert rec.latency_verdict.side == WITHIN
    assert len(rec.latency_verdict.rounds) == 9  # the logged ones: 3 batches
