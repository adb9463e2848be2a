"""A search with an energy budget on a board with a meter: the simulated INA226 read by the
real local agent through its power_root. Every measured trial carries an energy figure from
that meter, the budget binds (a big candidate is infeasible by energy, with the reason), and
the answer meets the budget as measured. On a board without a meter the same search is
refused before anything trains, naming the board."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hwnas_bench.targets import TargetSpec
from search import Budgets, Searcher, SearchSpace
from search.build import build
from search.errors import SettingsError
from search.measure import Board
from search.onnx_export import to_onnx
from search.records import MEASURED
from search.space import Candidate

from .strategy_support import ListStrategy

pytest_plugins = ["hwnas_bench.testing.power_fixtures"]

SPACE = SearchSpace(input_shape=(8, 8, 1), num_layers=(1, 3), num_classes=10)
SMALL_NET = "in8x8x1-conv_k3_s1_c4-out10"
#: about a hundred times the small net's work: its energy per inference is far above
BIG_NET = "in8x8x1-conv_k5_s1_c128-conv_k5_s1_c128-conv_k5_s1_c128-out10"
NETS = [
    SMALL_NET,
    "in8x8x1-pool_k2_s2-out10",
    BIG_NET,
    "in8x8x1-fc_u16-out10",
    "in8x8x1-conv_k3_s2_c4-out10",
    "in8x8x1-conv_k3_s1_c4-pool_k2_s2-out10",
]  # six different candidates: six measured trials (a repeat is not measured again)
BENCH = {"min_time_s": 0.25, "min_iterations": 10, "warmup_min_s": 0.02}


def _energy_mj(target: TargetSpec, encoding: str) -> float:
    """One candidate's energy per inference on ``target``, as a search would measure it."""
    board = Board(target, energy=True)
    try:
        m = board.measure(to_onnx(build(Candidate.decode(encoding))), name=encoding)
    finally:
        board.close()
    assert m.power.energy_mj is not None, m.power.reason
    return float(m.power.energy_mj)


def _searcher(target: TargetSpec, out: Path, budget_mj: float, **kw: Any) -> Searcher:
    return Searcher(
        SPACE,
        target=target,
        strategy=ListStrategy(NETS),
        budgets=Budgets(energy_mj=budget_mj),
        trials=6,
        epochs=1,
        batch_size=64,
        predictor=False,
        bench=BENCH,
        out=out,
        progress=False,
        **kw,
    )


def test_an_energy_budget_binds_on_the_meter_and_the_answer_meets_it(
    metered_target: TargetSpec, small_digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    small, big = _energy_mj(metered_target, SMALL_NET), _energy_mj(metered_target, BIG_NET)
    assert big > 4 * small, (small, big)
    budget = math.sqrt(small * big)  # well between the two, whatever the host's speed
    searcher = _searcher(metered_target, tmp_path / "run", budget)
    model = searcher.search(*small_digits)
    result = searcher.result
    assert result is not None
    measured = [r for r in result.trials if r.outcome == MEASURED]
    assert len(measured) == 6
    for r in measured:  # every measured trial has energy, from the simulated meter
        assert r.energy_mj is not None, r
        assert r.energy_mj > 0, r
        assert r.measurement is not None
        assert "simulated: power_root" in (r.measurement.power.source or ""), r.measurement.power
    over = [r for r in measured if r.candidate == BIG_NET]
    assert len(over) == 1
    assert over[0].feasible is False
    assert "over budget: energy" in (over[0].reason or ""), over[0].reason
    assert model.record.energy_mj is not None
    assert model.record.energy_mj <= budget
    assert model.record.feasible is True


def test_an_energy_budget_on_a_board_without_a_meter_is_refused_before_training(
    small_digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    searcher = _searcher(TargetSpec("bare", "local", profile="local"), out, 1.0)
    with pytest.raises(SettingsError, match="bare") as caught:
        searcher.search(*small_digits)
    assert "power meter" in str(caught.value)
    assert not (out / "models").exists() or not any((out / "models").iterdir())


@pytest.mark.parametrize("asks", [["--energy-budget-mj", "1"], ["--objective", "energy"]])
def test_hwnas_search_asking_for_energy_without_a_meter_exits_2_naming_the_board(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], asks: list[str]
) -> None:
    from hwnas_bench.cli.main import main

    out = tmp_path / "run"
    argv = ["search", "--dataset", "digits", *asks, "--trials", "2"]
    code = main([*argv, "--epochs", "1", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert err[-1].startswith("hwnas: error: "), err
    assert "board local has no power meter" in err[-1], err
    assert not list(out.glob("models/*")), "nothing is trained before the refusal"


def test_a_table_measured_without_a_meter_gets_its_energy_on_a_metered_board(
    metered_target: TargetSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table's fingerprint leaves the meter out (it changes no speed), so a board's
    latency-only entries are found again on the same board with a meter: with energy
    wanted they count as missing and are measured again, with energy."""
    from search.measure import SEARCH_BENCH
    from search.predict import LatencyTable, candidate_ops

    monkeypatch.setenv("HWNAS_CACHE_DIR", str(tmp_path / "cache"))
    ops = candidate_ops(Candidate.decode(SMALL_NET))
    bare = Board(TargetSpec("bare", "local", profile="local"), bench=SEARCH_BENCH)
    try:
        first = LatencyTable.for_board(bare, "p50", tmp_path / "a")
        assert first.ensure(ops, bare) > 0
    finally:
        bare.close()
    assert not first.has_energy
    metered = Board(metered_target, bench=SEARCH_BENCH, energy=True)
    try:
        table = LatencyTable.for_board(metered, "p50", tmp_path / "b")
        assert table.fingerprint == first.fingerprint  # the same board's speed
        assert not table.has_energy  # found in the cache, without energy
        assert table.missing(ops, energy=True)  # every entry lacks its energy
        assert table.ensure(ops, metered) > 0
        assert not table.missing(ops, energy=True)
    finally:
        metered.close()
    assert table.has_energy
    assert table.sum_energy_mj(ops) is not None
