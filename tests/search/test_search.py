"""End-to-end searches on `local` with tiny budgets: the API, both strategies, pruning
counts, constraints recorded for NSGA-II, an infeasible budget, the run directory."""

from __future__ import annotations

import contextlib
import itertools
import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from hwnas_bench import Measurement
from search import InfeasibleBudgetError, Searcher, SearchSpace
from search.records import TrialRecord
from search.space import Candidate
from search.strategies import EvolutionStrategy, RandomStrategy
from search.training.data import Arrays

SMALL = {"min_time_s": 0.05, "min_iterations": 10, "warmup_min_s": 0.0}
RUN_FILES = (
    "study.db",
    "measurements.jsonl",
    "pareto.json",
    "best.onnx",
    "pareto.png",
    "summary.md",
    "search.json",
)


def digits_space(**kw: object) -> SearchSpace:
    args: dict[str, object] = {
        "input_shape": (8, 8, 1),
        "num_layers": (1, 3),
        "layer_types": ["conv", "dwconv", "pool", "fc"],
        "conv_channels": [4, 8],
        "fc_sizes": [16, 32],
    }
    args.update(kw)
    return SearchSpace(**args)  # type: ignore[arg-type]


def test_the_issue_example_runs_as_written(tmp_path: Path) -> None:
    """The seed-style example, only epochs lowered and trials given, on synthetic 32x32x3."""
    rng = np.random.default_rng(0)
    train_data = rng.random((96, 32, 32, 3), dtype=np.float32)
    train_labels = (train_data[:, :16].mean(axis=(1, 2, 3)) > train_data.mean()).astype(int)
    test_data, test_labels = train_data[:32], train_labels[:32]

    # the issue's lines, verbatim (hence the long lines)
    space = SearchSpace(input_shape=(32, 32, 3), output_shape=(1,), num_layers=5,
                        layer_types=["conv", "pool", "fc"], conv_kernels=[3, 3], conv_strides=[1, 1],  # noqa: E501
                        pool_sizes=[2, 2], pool_strides=[2, 2], fc_sizes=[64, 128])  # fmt: skip
    searcher = Searcher(space, optimizer="adam", epochs=1, trials=3, out=tmp_path, bench=SMALL)
    best_model = searcher.search(train_data, train_labels)
    test_loss, test_accuracy = best_model.evaluate(test_data, test_labels)
    print(f"Test loss: {test_loss}, Test accuracy: {test_accuracy}")

    assert 0.0 <= test_accuracy <= 1.0
    assert test_loss > 0
    assert best_model.predict(test_data).shape == (32,)
    assert set(best_model.predict(test_data)) <= {0, 1}
    assert isinstance(best_model.module, torch.nn.Module)
    assert isinstance(best_model.measurement, Measurement)
    assert best_model.measurement.target == "local"
    assert best_model.candidate.num_classes == 2  # taken from the labels
    assert best_model.onnx == (tmp_path / "best.onnx").read_bytes()
    assert best_model.save(tmp_path / "copy.onnx").read_bytes() == best_model.onnx
    into_dir = best_model.save(tmp_path)  # a directory: the file is named by the hash
    assert into_dir == tmp_path / f"{best_model.candidate.hash}.onnx"
    assert into_dir.read_bytes() == best_model.onnx
    result = searcher.result
    assert result is not None
    assert len(result.trials) == 3
    assert result.counts["generated"] == 3
    assert result.pareto
    assert all(r.measurement is not None for r in result.pareto)
    for name in RUN_FILES:
        assert (tmp_path / name).is_file(), name


#: two conv layers of 8 or 128 channels, k3 or k5: light ones (~0.01 ms here) and heavy
#: ones (two 128-channel layers, ~0.5 ms here): a budget between the two binds, far from
#: the noise of a tiny model's measurement (up to 2x between speed states on a small box)
BINDING_SPACE = {
    "layer_types": ["conv"],
    "num_layers": 2,
    "conv_kernels": [3, 5],
    "conv_channels": [8, 128],
}
LIGHTEST = "in8x8x1-conv_k3_s1_c8-conv_k3_s1_c8-out10"
HEAVIEST = "in8x8x1-conv_k5_s1_c128-conv_k5_s1_c128-out10"


@pytest.fixture(scope="module")
def binding_budget_ms() -> float:
    """A latency budget between BINDING_SPACE's lightest and heaviest architecture, as this
    machine measures them (geometrically half-way): some candidates are over it."""
    from dataclasses import replace

    from search.build import build
    from search.measure import SEARCH_BENCH, Board, latency_of
    from search.onnx_export import to_onnx

    board = Board("local", bench=replace(SEARCH_BENCH, **SMALL))
    try:
        board.connect()
        light, heavy = (
            latency_of(board.measure(to_onnx(build(Candidate.decode(e)))), "p50")
            for e in (LIGHTEST, HEAVIEST)
        )
    finally:
        board.close()
    assert heavy > 4 * light, (light, heavy)  # else the space does not split here
    return float((light * heavy) ** 0.5)


@pytest.mark.parametrize("strategy", ["random", "evolution"])
def test_both_strategies_search_digits_within_a_budget_that_binds(
    strategy: str,
    tmp_path: Path,
    small_digits: tuple[np.ndarray, np.ndarray],
    binding_budget_ms: float,
) -> None:
    x, y = small_digits
    budget = binding_budget_ms
    searcher = Searcher(
        digits_space(**BINDING_SPACE),
        strategy=strategy,
        constraints={"latency_ms": budget},
        trials=6,
        epochs=1,
        batch_size=64,
        seed=3,
        out=tmp_path,
        bench=SMALL,
    )
    best = searcher.search(x, y)
    result = searcher.result
    assert result is not None
    counts = result.counts
    assert counts["generated"] == 6
    assert counts["measured"] + counts["pruned"] + counts["failed"] == 6
    measured = [r for r in result.trials if r.outcome == "measured"]

    def undecided(r: TrialRecord) -> bool:  # its rounds straddled the budget (confidence.py)
        return r.latency_verdict is not None and not r.latency_verdict.decided

    over = [r for r in measured if r.latency_ms is not None and r.latency_ms > budget]
    # a candidate under the budget whose rounds left its side undecided is not within
    within = [
        r
        for r in measured
        if r.latency_ms is not None and r.latency_ms <= budget and not undecided(r)
    ]
    over += [r for r in measured if r not in over and r not in within]
    # seed 3 draws heavy and light candidates alike: the budget binds in this run
    assert over, f"no candidate over {budget:.4f} ms: {[r.latency_ms for r in measured]}"
    assert within, f"no candidate within {budget:.4f} ms: {[r.latency_ms for r in measured]}"
    # every trial over the budget (or undecided) is measured, kept and marked infeasible
    assert all(r.feasible is False for r in over)
    assert all(r.feasible is True for r in within)
    assert counts["infeasible"] == len(over)
    # the best: the most accurate of the feasible ones, ties to the faster, never one over
    want = max(within, key=lambda r: (r.accuracy or 0.0, -(r.latency_ms or 0.0)))
    assert best.record.number == want.number
    assert best.record.hash not in {r.hash for r in over}
    front = json.loads((tmp_path / "pareto.json").read_text())["front"]
    assert front
    assert {row["hash"] for row in front} <= {r.hash for r in within}
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path}/study.db")
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == len(measured)
    by_number = {r.number: r for r in measured}
    for t in complete:  # the budget is recorded as a constraint NSGA-II reads
        verdict = by_number[t.number].latency_verdict
        assert verdict is not None  # a latency budget: every measurement has its verdict
        slack = verdict.slack if undecided(by_number[t.number]) else t.values[1] - budget
        assert t.constraints["latency_ms"] == pytest.approx(slack)
    assert sum(t.constraints["latency_ms"] > 0 for t in complete) == len(over)
    lines = (tmp_path / "measurements.jsonl").read_text().splitlines()
    assert len(lines) == counts["measured"]
    # on local, training and measuring never overlap: each trial starts after the last ended
    trials = study.get_trials()
    for a, b in itertools.pairwise(trials):
        assert a.datetime_complete is not None
        assert b.datetime_start is not None
        assert b.datetime_start >= a.datetime_complete
    m = Measurement.from_dict(json.loads(lines[0])["measurement"])
    assert m.settings["threads"] == 1  # a search measurement: one thread by default


def test_strategies_are_seeded_and_sized_for_the_budget() -> None:
    space = digits_space(num_classes=10)
    sampler = EvolutionStrategy(seed=1).sampler(40, space)
    assert isinstance(sampler, optuna.samplers.NSGAIISampler)
    assert sampler._population_size == 8  # max(4, 40 // 5), not Optuna's 50

    def proposals(seed: int) -> list[str]:
        study = optuna.create_study(sampler=RandomStrategy(seed=seed).sampler(5, space))
        return [RandomStrategy().propose(study.ask(), space).encode() for _ in range(5)]

    assert proposals(1) == proposals(1)
    assert proposals(1) != proposals(2)


def test_hardware_limits_prune_before_training_and_are_counted(
    tmp_path: Path, small_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = small_digits
    space = digits_space(num_layers=(1, 2), conv_channels=[4, 32], fc_sizes=[16, 512])
    # 0.02 MB: the wide candidates (32 channels, 512 units) do not fit, the narrow ones do
    searcher = Searcher(
        space,
        strategy="random",
        constraints={"memory_mb": 0.02},
        trials=8,
        epochs=1,
        batch_size=64,
        out=tmp_path,
        bench=SMALL,
    )
    # every candidate may be pruned with this seed; the counts are what matter here
    with contextlib.suppress(InfeasibleBudgetError):
        searcher.search(x, y)
    result = searcher.result
    assert result is not None
    pruned = [r for r in result.trials if r.outcome == "pruned_memory"]
    assert result.counts["pruned_memory"] == len(pruned) > 0
    for r in pruned:
        assert r.train_s is None
        assert r.measurement is None
        assert r.cost["memory_mb"] > 0.02
        assert "memory_mb 0.02" in (r.reason or "")
    for r in result.trials:
        if r.outcome == "measured":
            assert r.cost["memory_mb"] <= 0.02


def test_an_infeasible_budget_names_the_smallest_latency_measured(
    tmp_path: Path, small_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = small_digits
    searcher = Searcher(
        digits_space(),
        strategy="random",
        constraints={"latency_ms": 1e-6},
        trials=3,
        epochs=1,
        batch_size=64,
        out=tmp_path,
        bench=SMALL,
    )
    with pytest.raises(InfeasibleBudgetError) as info:
        searcher.search(x, y)
    result = searcher.result
    assert result is not None
    measured = [r.latency_ms for r in result.trials if r.latency_ms is not None]
    assert measured
    assert info.value.smallest_ms == min(measured)
    assert f"{min(measured):.3f} ms" in str(info.value)
    assert "budget of 1e-06 ms" in str(info.value)
    assert result.counts["infeasible"] == len(measured)  # measured, kept, marked infeasible
    assert not (tmp_path / "best.onnx").exists()
    assert "no feasible candidate" in (tmp_path / "summary.md").read_text()


def test_a_second_run_in_the_same_directory_must_resume(
    tmp_path: Path, small_digits: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    from search import SettingsError

    x, y = small_digits
    args = {
        "strategy": "random",
        "trials": 2,
        "epochs": 1,
        "batch_size": 64,
        "out": tmp_path,
        "bench": SMALL,
    }
    Searcher(digits_space(), **args).search(x, y)  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="already holds a search"):
        Searcher(digits_space(), **args).search(x, y)  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="seed"):
        Searcher(digits_space(), seed=9, resume=True, **args).search(x, y)  # type: ignore[arg-type]
    more = Searcher(digits_space(), resume=True, progress=True, **{**args, "trials": 3})  # type: ignore[arg-type]
    more.search(x, y)
    assert more.result is not None
    assert more.result.counts["generated"] == 3
    assert "search" in capsys.readouterr().err  # the rich progress bar, on stderr


def test_digits_arrays_and_the_test_split(digits: Arrays) -> None:
    assert digits.x_test is not None
    assert digits.input_shape == (8, 8, 1)


def test_an_energy_budget_without_a_power_meter_is_refused_before_training(
    tmp_path: Path, small_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    from search import SettingsError

    searcher = Searcher(
        digits_space(),
        constraints={"energy_mj": 1.0},
        trials=2,
        epochs=1,
        batch_size=64,
        out=tmp_path,
    )
    with pytest.raises(SettingsError, match=r"an energy budget, .* board local has no power meter"):
        searcher.search(*small_digits)
    assert searcher.result is not None
    assert searcher.result.trials == []
    assert not (tmp_path / "measurements.jsonl").exists()
    # nothing was started: the same directory takes the corrected search, no --resume needed
    Searcher(digits_space(), trials=1, epochs=1, batch_size=64, out=tmp_path, bench=SMALL).search(
        *small_digits
    )


def test_unknown_settings_are_refused_at_once() -> None:
    from search import SettingsError

    with pytest.raises(SettingsError, match="unknown strategy 'annealing'"):
        Searcher(digits_space(), strategy="annealing")
    with pytest.raises(SettingsError, match="unknown constraint 'latency'"):
        Searcher(digits_space(), constraints={"latency": 2.0})
    with pytest.raises(SettingsError, match="unknown latency_stat"):
        Searcher(digits_space(), latency_stat="p42")
    with pytest.raises(SettingsError, match="must be a finite number > 0"):
        Searcher(digits_space(), constraints={"latency_ms": -1})


def test_hopeless_training_runs_stop_early_through_the_optuna_pruner(
    tmp_path: Path, small_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    # no run can reach 110% accuracy: every one is stopped after its warm-up epoch
    searcher = Searcher(
        digits_space(),
        strategy="random",
        trials=3,
        epochs=4,
        batch_size=64,
        out=tmp_path,
        bench=SMALL,
        pruner=optuna.pruners.ThresholdPruner(lower=1.1, n_warmup_steps=1),
    )
    with pytest.raises(InfeasibleBudgetError, match="No candidate was measured"):
        searcher.search(*small_digits)
    result = searcher.result
    assert result is not None
    stopped = [r for r in result.trials if r.outcome == "pruned_training"]
    valid = [r for r in result.trials if r.outcome != "invalid"]
    assert stopped == valid
    assert result.counts["pruned_training"] == len(stopped) > 0
    assert all("after 2 epochs" in (r.reason or "") for r in stopped)
    assert result.counts["measured"] == 0
    curves = optuna.load_study(
        study_name="search.training", storage=f"sqlite:///{tmp_path}/study.db"
    )
    assert {t.state for t in curves.trials} == {optuna.trial.TrialState.PRUNED}
    assert all(sorted(t.intermediate_values) == [0, 1] for t in curves.trials)


def _ask_tell(strategy: str, seed: int, trials: int, space: SearchSpace) -> list[str]:
    """The encodings a strategy proposes over ``trials`` trials, each told at once: the
    analytic cost stands in for training and measuring (this checks the sampler only)."""
    from search.cost import cost
    from search.strategies import get_strategy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = get_strategy(strategy, seed=seed)
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=s.sampler(trials, space)
    )
    proposed = []
    for _ in range(trials):
        trial = study.ask()
        candidate = s.propose(trial, space)
        proposed.append(candidate.encode())
        if not candidate.is_valid():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        c = cost(candidate)
        trial.set_constraint("latency_ms", c.flops / 1e5 - 1.0)
        study.tell(trial, [min(1.0, c.params / 5000), c.flops / 1e5])
    return proposed


def test_evolution_proposes_each_architecture_once() -> None:
    """NSGA-II's children that decode to an architecture already tried are mutated again
    (in a gene the candidate uses) before they are proposed: no repeats, no invalid ones,
    where the space has enough architectures (Optuna's NSGA-II alone repeated 18-32 of 40)."""
    space = digits_space(num_classes=10)
    proposed = _ask_tell("evolution", 0, 40, space)
    assert len(set(proposed)) == len(proposed) == 40
    assert all(Candidate.decode(p).is_valid() for p in proposed)
    # seeded: the same seed proposes the same candidates, another seed others
    assert _ask_tell("evolution", 0, 40, space) == proposed
    assert _ask_tell("evolution", 1, 40, space) != proposed


def test_evolution_starts_from_the_candidates_random_draws_for_the_seed() -> None:
    """The first generation uses random's seeded draws (same genes, same order) until a
    draw repeats or is invalid, so the two strategies differ only by what NSGA-II adds."""
    space = digits_space(num_classes=10)
    rand = _ask_tell("random", 4, 8, space)
    evo = _ask_tell("evolution", 4, 8, space)
    same = next((i for i, (a, b) in enumerate(zip(rand, evo, strict=True)) if a != b), len(rand))
    first_bad = next(
        (i for i, p in enumerate(rand) if p in rand[:i] or not Candidate.decode(p).is_valid()),
        len(rand),
    )
    assert same >= first_bad >= 1
