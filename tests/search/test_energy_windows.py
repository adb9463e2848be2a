"""Energy wanted: each measurement's windows cover what the board's meter needs (the
simulated INA226, read by the real local agent), and a board without a meter is refused."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hwnas_bench.targets import TargetSpec
from hwnas_bench.testing import SimulatedIna226
from search.build import build
from search.errors import SettingsError
from search.measure import POLL_FRACTION, SEARCH_BENCH, WINDOW_ROOM, Board
from search.onnx_export import to_onnx
from search.predict.table import table_bench
from search.space import Candidate

pytest_plugins = ["hwnas_bench.testing.power_fixtures"]

CANDIDATE = "in8x8x1-conv_k3_s1_c8-pool_k2_s2-fc_u16-out10"
#: one round's share of SEARCH_BENCH, as Board.measure hands it on
PER_ROUND = replace(SEARCH_BENCH, min_time_s=SEARCH_BENCH.min_time_s / 3)


def meter_facts(update_interval_ms: float | None, scope: str = "board") -> dict[str, object]:
    meter = {"source": "hwmon:ina226", "kind": "power", "scope": scope}
    return {"power_meters": [{**meter, "update_interval_ms": update_interval_ms}]}


@pytest.fixture(scope="module")
def model() -> bytes:
    return to_onnx(build(Candidate.decode(CANDIDATE), seed=0))


@pytest.fixture
def slow_meter(tmp_path: Path) -> Iterator[SimulatedIna226]:
    """An INA226 converting every 100 ms: today's 83 ms rounds are too short for it."""
    with SimulatedIna226(tmp_path / "slow-root", update_interval_ms=100) as meter:
        yield meter


def on(meter: SimulatedIna226) -> TargetSpec:
    return TargetSpec("metered", "local", {"power_root": str(meter.root)}, profile="local")


# -- the plan, from the hello facts (no board) ----------------------------------------------


def test_a_fast_meter_keeps_the_latency_only_windows() -> None:
    board = Board("local", energy=True)
    board.facts = meter_facts(5.0)
    each, rounds = board.rounds_for(PER_ROUND)
    # 3 updates of 5 ms (polled every 3 ms) are far below a third of 0.25 s
    assert rounds == 3
    assert each.min_time_s == pytest.approx(PER_ROUND.min_time_s)
    assert each.power_interval_s == pytest.approx(POLL_FRACTION * 0.005)


def test_a_slow_meter_is_polled_faster_and_gets_one_longer_window() -> None:
    board = Board("local", energy=True)
    board.facts = meter_facts(100.0)
    each, rounds = board.rounds_for(PER_ROUND)
    # polled at 60 ms: its 3 updates (0.3 s), not 5 polls of 0.1 s (0.5 s), bound the window
    assert each.power_interval_s == pytest.approx(0.06)
    assert each.min_time_s == pytest.approx(0.3 * WINDOW_ROOM)
    assert rounds == 1  # one 0.36 s loop, not three
    assert each.max_time_s >= each.min_time_s


def test_a_meter_that_does_not_say_its_rate_is_polled_as_asked() -> None:
    board = Board("local", energy=True)
    board.facts = meter_facts(None)
    each, rounds = board.rounds_for(PER_ROUND)
    assert each.power_interval_s == SEARCH_BENCH.power_interval_s  # faster would repeat values
    assert each.min_time_s == pytest.approx(5 * SEARCH_BENCH.power_interval_s * WINDOW_ROOM)
    assert rounds == 1


def test_a_gpu_meter_does_not_size_a_cpu_models_window() -> None:
    board = Board("local", energy=True)
    board.facts = {
        "power_meters": [
            *meter_facts(2.0, scope="gpu")["power_meters"],  # type: ignore[misc]
            *meter_facts(100.0)["power_meters"],  # type: ignore[misc]
        ]
    }
    each, _ = board.rounds_for(PER_ROUND)
    assert each.power_interval_s == pytest.approx(0.06)  # the board meter's, not the GPU's


def test_latency_only_is_as_before() -> None:
    board = Board("local")
    board.facts = meter_facts(100.0)
    assert board.rounds_for(PER_ROUND) == (PER_ROUND, 3)
    assert table_bench(board) is board.bench


def test_the_table_loop_covers_the_meter_when_energy_is_wanted() -> None:
    board = Board("local", bench=replace(SEARCH_BENCH, min_time_s=0.1), energy=True)
    board.facts = meter_facts(100.0)
    each = table_bench(board)
    assert each.min_time_s == pytest.approx(0.3 * WINDOW_ROOM)  # the short loop, raised
    assert each.power_interval_s == pytest.approx(0.06)
    board.facts = meter_facts(5.0)
    assert table_bench(board).min_time_s == pytest.approx(0.03)  # the short loop as it is


# -- on the simulated meter ------------------------------------------------------------------


def test_energy_wanted_gets_energy_from_a_slow_meter(
    slow_meter: SimulatedIna226, model: bytes
) -> None:
    plain, wanted = Board(on(slow_meter)), Board(on(slow_meter), energy=True)
    try:
        plain.connect()
        wanted.connect()
        slow_meter.wait_for_agent()
        before = plain.measure(model)
        assert before.power.energy_mj is None  # what every search measurement got
        assert before.power.reason is not None
        assert "shorter than" in before.power.reason
        m = wanted.measure(model)
    finally:
        plain.close()
        wanted.close()
    assert m.power.reason is None, m.power.reason
    assert m.power.energy_mj is not None
    assert m.power.energy_mj > 0
    assert m.power.update_interval_ms == 100.0
    assert m.power.sample_interval_ms == pytest.approx(60.0)
    assert m.window_s >= 0.3


def test_a_meter_slower_than_it_says_is_measured_again_with_the_agents_window(
    slow_meter: SimulatedIna226, model: bytes
) -> None:
    board = Board(on(slow_meter), energy=True)
    try:
        board.connect()
        slow_meter.wait_for_agent()
        # the facts claim 5 ms: the first windows are too short, the agent says 0.3 s
        board.facts = {**board.facts, **meter_facts(5.0)}
        m = board.measure(model)
        again = board.measure(model)
    finally:
        board.close()
    assert m.power.energy_mj is not None, m.power.reason
    assert again.power.energy_mj is not None, again.power.reason
    assert again.window_s >= 0.3  # learnt once, kept


def test_energy_wanted_on_a_board_without_a_meter_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "no-meter-root"
    empty.mkdir()
    spec = TargetSpec("bare", "local", {"power_root": str(empty)}, profile="local")
    board = Board(spec, energy=True)
    try:
        with pytest.raises(SettingsError, match="board bare has no power meter"):
            board.connect()
        plain = Board(spec)
        plain.connect()  # latency only: as before
        with pytest.raises(SettingsError, match="bare"):
            plain.want_energy()
        plain.close()
    finally:
        board.close()
