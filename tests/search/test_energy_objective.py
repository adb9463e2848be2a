"""Energy as the third objective: ``Searcher(objectives=("accuracy", "latency", "energy"))``
and ``hwnas search --objective energy``. On the simulated INA226 (the real local agent
reading it through its power_root) the study has three directions and metric names, the
front is over all three and carries energy, pareto.csv has it; the flag reaches search.json
and a resume keeps it; a board without a meter is refused naming it; a measurement without
an energy figure is never ranked as if it used little."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

from hwnas_bench.targets import TargetSpec
from search import Searcher, SearchSpace
from search.errors import SettingsError
from search.loop import objectives
from search.records import MEASURED, BoardFigures, TrialRecord, pareto
from search.settings import (
    DEFAULT_OBJECTIVES,
    ENERGY_OBJECTIVES,
    Budgets,
    MeasuredFigures,
    SearchSettings,
)
from search.training.settings import TrainSettings

from .strategy_support import ListStrategy

pytest_plugins = ["hwnas_bench.testing.power_fixtures"]

SPACE = SearchSpace(input_shape=(8, 8, 1), num_layers=(1, 3), num_classes=10)
NETS = [
    "in8x8x1-conv_k3_s1_c4-out10",
    "in8x8x1-pool_k2_s2-out10",
    "in8x8x1-conv_k3_s1_c16-conv_k3_s1_c16-out10",
    "in8x8x1-fc_u16-out10",
]  # four different candidates: four measured trials
BENCH = {"min_time_s": 0.25, "min_iterations": 10, "warmup_min_s": 0.02}


def _searcher(target: TargetSpec | str, out: Path, **kw: Any) -> Searcher:
    return Searcher(
        SPACE,
        target=target,
        strategy=ListStrategy(NETS),
        objectives=("accuracy", "latency", "energy"),
        trials=kw.pop("trials", len(NETS)),
        train=TrainSettings(epochs=1, batch_size=64, final_epochs=0),
        predictor=False,
        bench=BENCH,
        out=out,
        progress=False,
        **kw,
    )


def test_a_three_objective_search_on_the_meter_writes_a_front_with_energy(
    metered_target: TargetSpec, small_digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    searcher = _searcher(metered_target, out)
    model = searcher.search(*small_digits)
    result = searcher.result
    assert result is not None
    measured = [r for r in result.trials if r.outcome == MEASURED]
    assert len(measured) == len(NETS)
    assert all(r.energy_mj is not None and r.energy_mj > 0 for r in measured), measured
    assert model.record.energy_mj is not None

    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.directions) == 3
    assert study.directions[2] == optuna.study.StudyDirection.MINIMIZE
    assert study.metric_names == ["accuracy", "latency_ms", "energy_mj"]
    told = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert told
    assert all(len(t.values) == 3 and math.isfinite(t.values[2]) for t in told)

    record = json.loads((out / "search.json").read_text())
    assert record["settings"]["objectives"] == ["accuracy", "latency", "energy"]
    front_json = json.loads((out / "pareto.json").read_text())
    assert front_json["objectives"] == ["accuracy", "latency", "energy"]
    assert front_json["front"]
    assert all(row["energy_mj"] is not None for row in front_json["front"])
    with (out / "pareto.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows
    assert all(float(row["energy_mj"]) > 0 for row in rows)
    summary = (out / "summary.md").read_text()
    assert "measured energy per inference (min)" in summary
    assert "accuracy, latency and energy" in summary
    assert (out / "pareto.png").stat().st_size > 0


def test_the_energy_objective_on_a_board_without_a_meter_is_refused_naming_it(
    small_digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    searcher = _searcher(TargetSpec("bare", "local", profile="local"), out)
    with pytest.raises(SettingsError, match="board bare has no power meter"):
        searcher.search(*small_digits)
    assert not list(out.glob("models/*")), "nothing is trained before the refusal"


def _board_config(tmp_path: Path, power_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "hwnas.toml"
    config.write_text(
        f'[boards.metered]\ntransport = "local"\npower_root = "{power_root}"\nprofile = "local"\n'
    )
    monkeypatch.setenv("HWNAS_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)


def _cli_argv(data: Path, out: Path) -> list[str]:
    return [
        "search",
        "--target",
        "metered",
        "--data",
        str(data),
        "--objective",
        "energy",
        "--strategy",
        "random",
        "--predictor",
        "off",
        "--trials",
        "2",
        "--epochs",
        "1",
        "--final-epochs",
        "0",
        "--batch-size",
        "64",
        "--min-time",
        "0.25",
        "--out",
        str(out),
        "--quiet",
    ]


def test_hwnas_search_objective_energy_reaches_search_json_and_a_resume_keeps_it(
    metered_target: TargetSpec,
    small_digits: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hwnas_bench.cli.main import main

    _board_config(tmp_path, Path(metered_target.options["power_root"]), monkeypatch)
    data = tmp_path / "small.npz"
    np.savez(data, x=small_digits[0], y=small_digits[1])
    out = tmp_path / "run"
    code = main(_cli_argv(data, out))
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err
    settings = json.loads((out / "search.json").read_text())["settings"]
    assert settings["objectives"] == ["accuracy", "latency", "energy"]
    storage = f"sqlite:///{out / 'study.db'}"
    before = len(optuna.load_study(study_name="search", storage=storage).trials)

    code = main(["search", "--resume", "--out", str(out), "--trials", "3", "--quiet"])
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err
    assert json.loads((out / "search.json").read_text())["settings"]["objectives"] == [
        "accuracy",
        "latency",
        "energy",
    ]
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}")
    assert len(study.directions) == 3
    assert len(study.trials) > before, "the resume ran more trials"
    complete = optuna.trial.TrialState.COMPLETE
    assert all(len(t.values) == 3 for t in study.trials if t.state == complete)

    code = main(["search", "--resume", "--out", str(out), "--objective", "latency"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert "--objective 'latency' contradicts the run's 'energy'" in err[-1], err


# the CLI refusal without a meter: test_energy_search.py (an energy budget or objective)


def test_the_differentiable_strategy_refuses_the_energy_objective() -> None:
    with pytest.raises(SettingsError, match="differentiable strategy weighs budgets"):
        Searcher(SPACE, strategy="differentiable", objectives=("accuracy", "latency", "energy"))


def test_objectives_are_checked_and_take_the_study_order() -> None:
    s = Searcher(SPACE, objectives=["energy", "accuracy", "latency"])
    assert s.settings.objectives == ENERGY_OBJECTIVES
    assert Searcher(SPACE).settings.objectives == DEFAULT_OBJECTIVES
    for bad, why in [
        (("accuracy", "power"), "unknown objective 'power'"),
        (("accuracy", "energy"), "must hold accuracy and latency"),
        (("accuracy", "latency", "latency"), "twice"),
        ("energy", "a list of names"),
    ]:
        with pytest.raises(SettingsError, match=why):
            Searcher(SPACE, objectives=bad)  # type: ignore[arg-type]


def test_search_json_holds_objectives_only_when_not_the_default() -> None:
    default = SearchSettings()
    assert "objectives" not in default.to_dict()  # an older run's record resumes as it was
    assert SearchSettings.from_dict(default.to_dict()).objectives == DEFAULT_OBJECTIVES
    energy = SearchSettings(objectives=ENERGY_OBJECTIVES)
    assert energy.to_dict()["objectives"] == ["accuracy", "latency", "energy"]
    assert SearchSettings.from_dict(energy.to_dict()) == energy
    assert energy.resume_key() != default.resume_key()
    assert energy.wants_energy
    assert not default.wants_energy
    assert SearchSettings(budgets=Budgets(energy_mj=1.0)).wants_energy


def test_a_measurement_without_energy_is_infeasible_and_the_study_gets_inf() -> None:
    settings = SearchSettings(objectives=ENERGY_OBJECTIVES)
    missing = MeasuredFigures(0.2, None, "window 0.08 s is shorter than the 0.5 s")
    why = objectives.energy_missing(missing, settings)
    assert why is not None
    assert "energy not measured" in why
    assert "window 0.08 s" in why
    assert objectives.energy_missing(MeasuredFigures(0.2, 1.5), settings) is None
    assert objectives.energy_missing(missing, SearchSettings()) is None  # not an objective
    rec = TrialRecord(0, "x", "h", MEASURED, accuracy=0.9, latency_ms=0.2, energy_mj=None)
    assert objectives.values(rec, ["t"], energy=True) == [0.9, 0.2, math.inf]
    assert objectives.values(rec, ["t"]) == [0.9, 0.2]


def test_several_targets_get_one_energy_objective_each() -> None:
    d = optuna.study.StudyDirection
    assert objectives.directions(2, energy=True) == [d.MAXIMIZE] + [d.MINIMIZE] * 4
    rec = TrialRecord(0, "x", "h", MEASURED, accuracy=0.8)
    rec.boards = {
        "a": BoardFigures(latency_ms=0.1, energy_mj=2.0),
        "b": BoardFigures(latency_ms=0.3, energy_mj=None),
    }
    assert objectives.values(rec, ["a", "b"], energy=True) == [0.8, 0.1, 0.3, 2.0, math.inf]


def _rec(n: int, acc: float, lat: float, energy: float | None) -> TrialRecord:
    return TrialRecord(
        n, f"c{n}", f"h{n}", MEASURED, accuracy=acc, latency_ms=lat, energy_mj=energy, feasible=True
    )


def test_the_front_over_energy_keeps_a_frugal_candidate_and_never_one_without_energy() -> None:
    fast = _rec(0, 0.9, 0.1, 5.0)
    frugal = _rec(1, 0.9, 0.2, 1.0)  # slower, less energy: on the 3-objective front only
    unmeasured = _rec(2, 0.99, 0.05, None)  # best on both others, but no energy figure
    assert [r.number for r in pareto([fast, frugal, unmeasured])] == [2]
    assert [r.number for r in pareto([fast, frugal, unmeasured], energy=True)] == [0, 1]


def test_the_study_names_one_energy_objective_per_target(
    small_digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    from search.loop.run import Search
    from search.loop.run_dir import RunDir
    from search.measure import Board
    from search.training.data import split

    data = split(small_digits[0].reshape(-1, 8, 8, 1), small_digits[1], 0.2, 0)
    settings = SearchSettings(objectives=ENERGY_OBJECTIVES)
    boards = {name: Board(TargetSpec(name, "local", profile="local")) for name in ("a", "b")}
    search = Search(
        SPACE,
        data,
        settings,
        boards=boards,
        strategy=ListStrategy(NETS),
        run_dir=RunDir(tmp_path / "run", None, "search"),
    )
    assert search.metric_names() == [
        "accuracy",
        "latency_ms[a]",
        "latency_ms[b]",
        "energy_mj[a]",
        "energy_mj[b]",
    ]


def test_two_metered_targets_each_get_a_front_with_energy(
    metered_target: TargetSpec, small_digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    second = TargetSpec("metered2", "local", dict(metered_target.options), profile="local")
    out = tmp_path / "run"
    searcher = _searcher("local", out, targets=[metered_target, second], trials=3)
    searcher.search(*small_digits)
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}")
    assert study.metric_names == [
        "accuracy",
        "latency_ms[metered]",
        "latency_ms[metered2]",
        "energy_mj[metered]",
        "energy_mj[metered2]",
    ]
    fronts = json.loads((out / "pareto.json").read_text())
    assert fronts["objectives"] == ["accuracy", "latency", "energy"]
    for name in ("metered", "metered2"):
        front = fronts["targets"][name]["front"]
        assert front, name
        assert all(row["energy_mj"] is not None for row in front), name
    assert "measured energy per inference (min), on each target" in (out / "summary.md").read_text()
