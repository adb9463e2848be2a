"""One typed Budgets, one slack() and one violations() for every budget check, and a figure
that was not measured is never within its budget (issue 18, "Unmeasured is never within
budget"): the trial is infeasible with the reason, the study gets a positive violation, the
compress step and deploy say ``not measured``, and the differentiable strategy refuses a
table without energy when energy is in its loss.

The measurements are the real local agent's, started on a power root that holds no meter:
its Measurement has no energy figure and the agent's own reason."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest

from hwnas_bench import Config, Measurement, TargetSpec
from search import Budgets, Searcher, SearchSpace
from search.build import build
from search.compress.step import within_budget
from search.cost import Limits
from search.deploy import deploy_model, verdict
from search.errors import SettingsError
from search.loop import objectives
from search.measure import Board
from search.model_card import read_target_folder, write_target_folder
from search.onnx_export import to_onnx
from search.predict.ops import OVERHEAD
from search.predict.table import LatencyTable, TableEntry
from search.records import MEASURED, BoardFigures, TrialRecord
from search.settings import MeasuredFigures, SearchSettings
from search.space import Candidate
from search.strategies import SearchContext
from search.strategies.differentiable import DifferentiableStrategy
from search.strategies.differentiable.supernet import Macro
from search.training.data import Split
from search.training.train import TrainSettings

#: a board name of this file's own (its lock is not another test's)
BARE = "budgets-bare"
ENCODING = "in8x8x1-conv_k3_s1_c8-pool_k2_s2-fc_u16-out10"


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TargetSpec]:
    """The local agent on a power root with no meter in it (so no energy, whatever this
    machine has), with the module's own lock directory."""
    root = tmp_path_factory.mktemp("no-meter")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HWNAS_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))
        yield TargetSpec(BARE, "local", {"power_root": str(root)})


@pytest.fixture(scope="module")
def measured(bare: TargetSpec) -> tuple[bytes, Measurement]:
    """A small candidate's ONNX bytes and their measurement on the bare board."""
    model = to_onnx(build(Candidate.decode(ENCODING)))
    board = Board(bare)
    try:
        return model, board.measure(model, name="budgets test")
    finally:
        board.close()


def _settings(**budgets: float) -> SearchSettings:
    return SearchSettings(budgets=Budgets(**budgets))


# -- Budgets itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"latency": 2.0}, "unknown constraint 'latency' (known: latency_ms, energy_mj, "),
        ({"latency_ms": -1}, "constraint latency_ms must be a finite number > 0, got -1"),
        ({"energy_mj": math.nan}, "constraint energy_mj must be a finite number > 0, got nan"),
        ({"params": True}, "constraint params must be a finite number > 0, got True"),
    ],
)
def test_budgets_refuse_what_the_constraints_were_refused_for(
    mapping: dict[str, float], message: str
) -> None:
    with pytest.raises(SettingsError, match=f"^{message}".replace("(", r"\(")):
        Budgets.from_mapping(mapping)


def test_budgets_are_typed_floats_and_none_is_no_budget() -> None:
    b = Budgets.from_mapping({"latency_ms": np.float32(2.0), "energy_mj": None}, stat="p95")
    assert b == Budgets(latency_ms=2.0, stat="p95")
    assert type(b.latency_ms) is float
    assert b.to_mapping() == {"latency_ms": 2.0}
    assert b.measured == {"latency_ms": 2.0}
    assert Budgets(memory_mb=3).measured == {}  # an analytic budget is not measured
    with pytest.raises(SettingsError, match="unknown latency_stat 'p42'"):
        Budgets(stat="p42")
    with pytest.raises(SettingsError, match="constraint flops must be a finite number > 0"):
        Budgets(flops=0)


def test_the_settings_record_keeps_the_keys_of_the_previous_version() -> None:
    """search.json of a run made before Budgets: the same keys, and it parses back (a run
    directory of the previous version still resumes)."""
    before = {
        "strategy": "evolution",
        "trials": 40,
        "constraints": {"latency_ms": 0.05, "params": 1000.0},
        "latency_stat": "p95",
        "train": {
            "optimizer": "adam",
            "lr": None,
            "epochs": 5,
            "batch_size": 64,
            "seed": 0,
            "threads": 1,
        },
        "validation_split": 0.2,
        "seed": 0,
        "predictor": True,
        "strategy_options": {},
    }
    settings = SearchSettings.from_dict(before)
    assert settings.budgets == Budgets(latency_ms=0.05, params=1000.0, stat="p95")
    assert settings.latency_stat == "p95"
    assert settings.to_dict() == before
    assert list(settings.to_dict()) == list(before)
    assert SearchSettings.from_dict(before, trials=3).trials == 3


def test_slack_and_violations_hand_computed() -> None:
    b = Budgets(latency_ms=1.0, energy_mj=2.0)
    over = MeasuredFigures(1.25, 1.5)
    assert b.slack(over) == {"latency_ms": 0.25, "energy_mj": -0.5}
    (v,) = b.violations(over)
    assert (v.budget, v.limit, v.value, v.measured) == ("latency_ms", 1.0, 1.25, True)
    assert v.reason == "over budget: p50 1.25 ms > 1 ms"
    # not measured: the budget itself as slack (as if twice the budget), and a violation
    bare = MeasuredFigures(math.nan, None, "no power meter found")
    assert b.slack(bare) == {"latency_ms": 1.0, "energy_mj": 2.0}
    assert [(v.budget, v.value, v.reason) for v in b.violations(bare)] == [
        ("latency_ms", None, "p50 latency not measured"),
        ("energy_mj", None, "energy not measured: no power meter found"),
    ]
    # exactly on the budget is within it; no measured budget, nothing to violate
    assert b.violations(MeasuredFigures(1.0, 2.0)) == []
    assert Budgets(memory_mb=1.0).slack(bare) == {}


# -- "Unmeasured is never within budget" ------------------------------------------------------


def test_an_energy_budget_with_no_figure_makes_the_trial_infeasible_with_the_reason(
    measured: tuple[bytes, Measurement],
) -> None:
    _, m = measured
    assert m.power.energy_mj is None
    assert m.power.reason
    settings = _settings(latency_ms=1e3, energy_mj=1.0)
    f = objectives.figures(m, settings, None)
    assert f.feasible is False
    assert f.reason == f"energy not measured: {m.power.reason}"
    assert f.latency_ms == m.latency.median_ms
    # with an energy figure within the budget the same measurement is feasible
    metered = replace(m, power=replace(m.power, energy_mj=0.5, reason=None))
    ok = objectives.figures(metered, settings, None)
    assert (ok.feasible, ok.reason) == (True, None)
    # and over it, infeasible with that reason
    hot = replace(m, power=replace(m.power, energy_mj=1.5, reason=None))
    assert objectives.figures(hot, settings, None).reason == "over budget: energy 1.5 mJ > 1 mJ"


def test_the_study_gets_a_positive_violation_for_an_unmeasured_energy(
    measured: tuple[bytes, Measurement],
) -> None:
    _, m = measured
    settings = _settings(latency_ms=1e3, energy_mj=1.0)
    study = optuna.create_study(directions=objectives.directions(1))  # in memory
    f = objectives.figures(m, settings, None)
    trial = study.ask()
    rec = TrialRecord(0, ENCODING, "h0", MEASURED, accuracy=0.5, measurement=m)
    rec.latency_ms, rec.energy_mj, rec.feasible = f.latency_ms, f.energy_mj, f.feasible
    objectives.constrain(trial, rec, settings)
    study.tell(trial, objectives.values(rec, [BARE]))
    (told,) = study.trials
    assert told.constraints["energy_mj"] == 1.0  # the budget itself: as if twice the budget
    assert told.constraints["latency_ms"] == pytest.approx(m.latency.median_ms - 1e3)

    # several targets: feasible for the study when within budget on one of them as measured
    metered = replace(m, power=replace(m.power, energy_mj=0.5, reason=None))
    within = objectives.figures(metered, settings, None)
    both = optuna.create_study(directions=objectives.directions(2))
    for boards, feasible in (({"a": f, "b": within}, True), ({"a": f, "b": f}, False)):
        trial = both.ask()
        several = replace(rec, number=trial.number, boards=dict(boards))
        objectives.constrain(trial, several, settings)
        both.tell(trial, objectives.values(several, ["a", "b"]))
        value = both.trials[trial.number].constraints["budgets"]
        assert (value <= 0) is feasible, value


def test_the_compress_step_says_not_measured_and_not_within_budget(
    measured: tuple[bytes, Measurement],
) -> None:
    _, m = measured
    within, why = within_budget(m, Budgets(latency_ms=1e3, energy_mj=1.0))
    assert within is False
    assert why == f"energy not measured: {m.power.reason}"
    assert within_budget(m, Budgets(latency_ms=1e3)) == (True, None)
    assert within_budget(m, Budgets(memory_mb=1.0)) == (None, None)  # no measured budget


def test_deploy_fails_an_unmeasured_energy_budget_unless_allowed(
    measured: tuple[bytes, Measurement], bare: TargetSpec, tmp_path: Path
) -> None:
    model, m = measured
    record = TrialRecord(0, ENCODING, Candidate.decode(ENCODING).hash, MEASURED, measurement=m)
    write_target_folder(
        tmp_path,
        BARE,
        model=model,
        record=record,
        settings=_settings(latency_ms=1e3, energy_mj=1.0),
        board_name=BARE,
        facts={},
    )
    _, card = read_target_folder(tmp_path, BARE)
    assert card.budget_limits == Budgets(latency_ms=1e3, energy_mj=1.0)
    assert card.latency_budget_ms == 1e3
    # the card's own measurement has no energy: not measured, unless allowed
    why = verdict(card, m)[2]
    assert why.startswith(f"energy not measured: {m.power.reason}; ")
    assert "--allow-unmeasured-energy" in why
    assert verdict(card, m, allow_unmeasured_energy=True)[2] == ""

    config = Config(boards={BARE: bare})
    failed = deploy_model(tmp_path, BARE, config=config)
    assert not failed.ok
    assert failed.reason.startswith("energy not measured: ")
    record_file = json.loads((tmp_path / "targets" / BARE / "deploy.json").read_text())
    assert record_file["ok"] is False
    assert record_file["latency_budget_ms"] == 1e3
    allowed = deploy_model(tmp_path, BARE, config=config, allow_unmeasured_energy=True)
    assert "energy" not in allowed.reason  # it may still differ from the card, never by energy
    assert any(n.startswith("energy budget not checked (allowed): ") for n in allowed.notes)


def _table(macro: Macro, *, energy: bool) -> LatencyTable:
    """A real table holding every op of ``macro`` (and the overhead), as a board would have
    measured them: with energy per op (a meter) or without (none)."""
    entries = {}
    for i, op in enumerate([OVERHEAD, *macro.layer_ops()]):
        joules = 0.02 + 0.001 * i if energy else None
        key = op.key()
        entries[key] = TableEntry(key, 0.01 + 0.001 * i, joules, 90, "2024-01-01T00:00:00+00:00")
    return LatencyTable("fp", "p50", entries)


def test_the_differentiable_strategy_refuses_a_table_without_energy(tmp_path: Path) -> None:
    space = SearchSpace(
        input_shape=(8, 8, 1),
        num_layers=(1, 2),
        layer_types=["conv"],
        conv_kernels=[3],
        conv_channels=[4, 8],
        num_classes=10,
    )
    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, 64).astype(np.int64)
    settings = SearchSettings(
        strategy="differentiable",
        budgets=Budgets(latency_ms=0.05, energy_mj=0.1),
        train=TrainSettings(epochs=1, batch_size=32),
    )

    def context(table: LatencyTable) -> SearchContext:
        # no board: the table holds every op, so nothing is measured
        return SearchContext(
            space, Split(x, y, x[:16], y[:16]), settings, None, tmp_path, Limits(), table, None
        )  # type: ignore[arg-type]

    macro = Macro(space)
    with pytest.raises(SettingsError, match=r"the latency table has no energy for \d+ of its"):
        DifferentiableStrategy(epochs=1).setup(context(_table(macro, energy=False)))
    # with energy for every op the same strategy sets up, energy in its loss
    strategy = DifferentiableStrategy(epochs=1)
    strategy.setup(context(_table(macro, energy=True)))
    assert strategy._ready.energy is not None


# -- Searcher(budgets=...) --------------------------------------------------------------------


def test_the_searcher_takes_budgets_or_the_older_constraints_never_both() -> None:
    space = SearchSpace(input_shape=(8, 8, 1), num_layers=1, layer_types=["fc"], fc_sizes=[8])
    typed = Searcher(space, budgets=Budgets(latency_ms=0.5, stat="p95"))
    assert typed.settings.budgets == Budgets(latency_ms=0.5, stat="p95")
    assert typed.settings.latency_stat == "p95"
    mapping = Searcher(space, budgets={"latency_ms": 0.5}, latency_stat="p99")
    assert mapping.settings.budgets == Budgets(latency_ms=0.5, stat="p99")
    older = Searcher(space, constraints={"latency_ms": 0.5})
    assert older.settings.budgets == Budgets(latency_ms=0.5)
    with pytest.raises(SettingsError, match="give budgets= or constraints="):
        Searcher(space, budgets={"latency_ms": 0.5}, constraints={"latency_ms": 0.5})
    with pytest.raises(SettingsError, match="latency_stat='p50' but the budgets are on 'p95'"):
        Searcher(space, budgets=Budgets(stat="p95"), latency_stat="p50")


def test_the_searcher_takes_a_train_settings_object_or_its_keywords_never_both() -> None:
    space = SearchSpace(input_shape=(8, 8, 1), num_layers=1, layer_types=["fc"], fc_sizes=[8])
    # the defaults are the settings objects' (the CLI's too): 10 epochs of batches of 32
    assert (
        Searcher(space).settings.train == TrainSettings() == TrainSettings(epochs=10, batch_size=32)
    )
    assert Searcher(space).settings.trials == 40
    given = TrainSettings(epochs=2, batch_size=16, seed=4, threads=2)
    typed = Searcher(space, train=given)
    assert typed.settings.train == given
    assert typed.settings.seed == 4  # one seed: the split's, the strategy's, the training's
    loose = Searcher(space, epochs=2, batch_size=16, seed=4, train_threads=2)
    assert loose.settings == typed.settings
    with pytest.raises(SettingsError, match=r"epochs=3 and train= both set the training's epochs"):
        Searcher(space, train=given, epochs=3)
    with pytest.raises(SettingsError, match=r"train_threads=1 and train= both set .* threads"):
        Searcher(space, train=given, train_threads=1)
    with pytest.raises(SettingsError, match=r"seed=5 but train.seed=4"):
        Searcher(space, train=given, seed=5)
    assert Searcher(space, train=given, seed=4).settings.seed == 4
    with pytest.raises(SettingsError, match="train is a TrainSettings"):
        Searcher(space, train={"epochs": 2})  # type: ignore[arg-type]


def test_the_cli_defaults_are_the_settings_objects() -> None:
    from search.cli.search_flags import DEFAULTS
    from search.measure import SEARCH_BENCH

    train = TrainSettings()
    assert (DEFAULTS["epochs"], DEFAULTS["batch_size"]) == (train.epochs, train.batch_size)
    assert DEFAULTS["optimizer"] == train.optimizer
    assert DEFAULTS["trials"] == SearchSettings().trials
    assert DEFAULTS["latency_stat"] == Budgets().stat == "p50"
    assert (DEFAULTS["min_time"], DEFAULTS["threads"]) == (
        SEARCH_BENCH.min_time_s,
        SEARCH_BENCH.threads,
    )


def test_a_board_figure_without_a_measurement_is_never_within_for_the_study() -> None:
    """A target where the candidate was not measured (pruned there for its memory) has no
    latency: for the study that is over budget, never 0 (it was ``(latency or 0) - b``)."""
    settings = _settings(latency_ms=1.0)
    study = optuna.create_study(directions=objectives.directions(2))
    trial = study.ask()
    fast = BoardFigures(latency_ms=0.5, feasible=True, outcome=MEASURED)
    rec = TrialRecord(0, ENCODING, "h0", MEASURED, accuracy=0.5, latency_ms=0.5)
    rec.boards = {"a": BoardFigures(outcome="pruned_profile_memory"), "b": BoardFigures()}
    objectives.constrain(trial, rec, settings)
    study.tell(trial, [0.5, 0.5, 0.5])
    assert study.trials[0].constraints["budgets"] == 1.0
    rec.boards["b"] = fast
    trial = study.ask()
    objectives.constrain(trial, rec, settings)
    study.tell(trial, [0.5, 0.5, 0.5])
    assert study.trials[1].constraints["budgets"] == pytest.approx(-0.5)
