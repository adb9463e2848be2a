"""Choosing the execution provider per board: on the real local agent, plus the pure rule."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hwnas_bench import BenchFailure, BenchSettings, Measurement, TargetSpec
from search.errors import SearchError, SettingsError
from search.loop.providers import (
    CPU,
    ProviderChoice,
    ProviderTrial,
    choose_provider,
    offered,
    pick,
    probe_candidate,
    probe_model,
)
from search.measure import Board, bench_settings
from search.space import Candidate, SearchSpace

SHORT = {"min_time_s": 0.05, "min_iterations": 10, "warmup_min_s": 0.0}
BOGUS = "NoSuchExecutionProvider"
SPACE = SearchSpace(
    (8, 8, 1), num_layers=3, conv_channels=(4, 8, 16), fc_sizes=(16, 32), num_classes=10
)


class CountingBoard(Board):
    """The real Board, remembering the provider of every measurement it was asked for."""

    def __init__(self, target: str | TargetSpec = "local") -> None:
        super().__init__(target, bench=bench_settings(SHORT))
        self.asked: list[str] = []

    def measure_many(
        self, models: list[bytes], *, names: list[str], bench: BenchSettings | None = None
    ) -> list[Measurement | BenchFailure]:
        self.asked.append((bench or self.bench).provider)
        return super().measure_many(models, names=names, bench=bench)


@pytest.fixture(scope="module")
def probe() -> bytes:
    return probe_model(SPACE)


@pytest.fixture
def board() -> Iterator[CountingBoard]:
    b = CountingBoard()
    yield b
    b.close()


def test_offered_leaves_out_providers_that_do_not_compute_on_the_board() -> None:
    facts = {"providers": ["AzureExecutionProvider", "CUDAExecutionProvider", CPU]}
    assert offered(facts) == ["CUDAExecutionProvider", CPU]
    assert offered({"providers": []}) == []


def test_the_only_provider_is_chosen_without_measuring(board: CountingBoard, probe: bytes) -> None:
    board.connect()
    assert offered(board.facts) == [CPU]  # this machine: Azure and CPU, Azure never counts
    choice = choose_provider(board, probe)
    assert choice.provider == CPU
    assert choice.tried == ()
    assert choice.reason.startswith("the only execution provider this board's onnxruntime")
    assert board.asked == []


def test_azure_in_the_candidates_is_not_measured(board: CountingBoard, probe: bytes) -> None:
    choice = choose_provider(board, probe, candidates=["AzureExecutionProvider", CPU])
    assert (choice.provider, choice.tried, board.asked) == (CPU, (), [])


def test_a_bogus_provider_is_tried_once_and_cpu_chosen(board: CountingBoard, probe: bytes) -> None:
    choice = choose_provider(board, probe, candidates=[CPU, BOGUS], rounds=3)
    assert choice.provider == CPU
    # interleaved rounds; the bogus one is dropped after it fails in round 1
    assert board.asked == [CPU, BOGUS, CPU, CPU]
    cpu, bogus = choice.tried
    assert cpu.provider == CPU
    assert cpu.error is None
    assert cpu.latency_ms is not None
    assert cpu.latency_ms > 0
    assert bogus.provider == BOGUS
    assert bogus.latency_ms is None
    assert bogus.error is not None
    assert BOGUS in bogus.error
    assert "\n" not in bogus.error


def test_only_bogus_providers_raise_naming_each(board: CountingBoard, probe: bytes) -> None:
    other = "NorThisExecutionProvider"
    with pytest.raises(SearchError) as err:
        choose_provider(board, probe, candidates=[BOGUS, other], rounds=2)
    assert BOGUS in str(err.value)
    assert other in str(err.value)
    assert board.asked == [BOGUS, other]


def test_a_single_given_provider_the_board_lacks_is_refused_before_any_trial(
    board: CountingBoard, probe: bytes
) -> None:
    with pytest.raises(SettingsError, match=f"execution provider {BOGUS} is not in"):
        choose_provider(board, probe, candidates=[BOGUS])
    assert board.asked == []  # refused at once, nothing measured


def test_probe_model_is_valid_onnx_that_onnxruntime_runs(probe: bytes) -> None:
    onnx.checker.check_model(onnx.load_from_string(probe))
    session = ort.InferenceSession(probe, providers=[CPU])
    (out,) = session.run(None, {"input": np.zeros((1, 1, 8, 8), np.float32)})
    assert out.shape == (1, 10)
    # the middle of the space, each layer kind in turn
    assert str(probe_candidate(SPACE)) == "in8x8x1-conv_k3_s1_c8-pool_k2_s2-fc_u32-out10"


def test_probe_of_a_space_without_classes_or_a_valid_middle() -> None:
    # labels decide the classes later: the probe makes do with PROBE_CLASSES
    assert probe_candidate(dataclasses.replace(SPACE, num_classes=None)).num_classes == 10
    # three pools shrink 2x2 below 1x1: the middle candidate is invalid, a seeded draw is not
    tiny = SearchSpace((2, 2, 1), num_layers=3, layer_types=("pool", "conv"), num_classes=3)
    middle = Candidate.decode("in2x2x1-pool_k2_s2-conv_k3_s1_c16-pool_k2_s2-out3")
    assert not middle.is_valid()
    first = probe_candidate(tiny, seed=1)
    assert first != middle
    assert first.is_valid()
    assert first == probe_candidate(tiny, seed=1)


def test_choice_round_trips_through_json() -> None:
    choice = ProviderChoice(
        CPU,
        "kept",
        (ProviderTrial(CPU, 0.125, None), ProviderTrial(BOGUS, None, "not in this build")),
    )
    data = json.loads(json.dumps(choice.to_dict()))
    assert ProviderChoice.from_dict(data) == choice
    assert data["tried"][1] == {"provider": BOGUS, "latency_ms": None, "error": "not in this build"}


@pytest.mark.parametrize(
    ("gpu_ms", "margin", "chosen"),
    [
        (0.96, 0.03, "GPU"),  # 4% faster than CPU's 1.0 ms: beyond the 3% margin
        (0.98, 0.03, CPU),  # 2% faster: not worth the copies
        (1.50, 0.03, CPU),  # slower
        (0.98, 0.01, "GPU"),  # the same 2% beats a 1% margin
    ],
)
def test_cpu_is_kept_unless_beaten_by_the_margin(gpu_ms: float, margin: float, chosen: str) -> None:
    trials = [ProviderTrial(CPU, 1.0, None), ProviderTrial("GPU", gpu_ms, None)]
    assert pick(trials, margin)[0] == chosen


def test_without_cpu_the_fastest_wins() -> None:
    trials = [ProviderTrial("A", 2.0, None), ProviderTrial("B", 1.99, None)]
    assert pick(trials, 0.03)[0] == "B"
    assert pick([ProviderTrial("A", None, "x"), ProviderTrial("B", 3.0, None)], 0.03)[0] == "B"


@pytest.mark.skipif(
    "bench" not in {f.name for f in dataclasses.fields(TargetSpec)},
    reason="TargetSpec.bench has not landed in this checkout",
)
def test_a_provider_fixed_by_the_config_is_taken_unmeasured(probe: bytes) -> None:
    fixed = CountingBoard(TargetSpec("local", "local", bench={"provider": CPU}))
    try:
        choice = choose_provider(fixed, probe, candidates=[CPU, BOGUS])
        assert (choice.provider, choice.tried, fixed.asked) == (CPU, (), [])
        assert "config" in choice.reason
    finally:
        fixed.close()
    missing = CountingBoard(TargetSpec("local", "local", bench={"provider": BOGUS}))
    try:
        with pytest.raises(SettingsError, match=BOGUS):
            choose_provider(missing, probe)
    finally:
        missing.close()


def test_bad_rounds_or_margin_are_refused(board: CountingBoard, probe: bytes) -> None:
    with pytest.raises(SettingsError):
        choose_provider(board, probe, rounds=0)
    with pytest.raises(SettingsError):
        choose_provider(board, probe, margin=1.5)
