"""What a search writes for people and tools: a resume that says what it kept and keeps a
finished run's reports, pareto.csv, plots that show the data, optuna-dashboard's metric
names, and ``hwnas report`` over a study whose attributes are garbage."""

from __future__ import annotations

import csv
import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import optuna
import pytest

from hwnas_bench.cli.main import main
from search import Searcher, SearchSpace, records
from search.loop import report
from search.loop.result import SearchResult
from search.records import TrialRecord
from search.settings import Budgets, SearchSettings
from search.strategies.differentiable import lambda_trace

matplotlib.use("Agg")
from matplotlib.figure import Figure

SPACE = dict(input_shape=(8, 8, 1), num_layers=1, layer_types=["fc"], fc_sizes=[8])
REPORTS = ("summary.md", "pareto.json", "pareto.csv", "pareto.png", "best.onnx")


def _data(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1), dtype=np.float32), np.arange(n) % 3


def _search(out: Path, trials: int, **kwargs: Any) -> Searcher:
    searcher = Searcher(
        SearchSpace(**SPACE),  # type: ignore[arg-type]
        trials=trials,
        epochs=1,
        batch_size=64,
        out=out,
        bench={"min_time_s": 0.02},
        constraints={"latency_ms": 50.0},
        **kwargs,
    )
    x, y = _data()
    searcher.search(x, y)
    return searcher


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("outputs") / "run"
    _search(out, 2)
    return out


# -- a resume -------------------------------------------------------------------------------


def test_a_resume_says_what_it_kept_and_a_finished_one_keeps_its_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    _search(out, 2)
    capsys.readouterr()
    _search(out, 3, resume=True)
    err = capsys.readouterr().err
    assert re.search(rf"hwnas: resumed {re.escape(str(out))}: kept \d+ measured trials?", err)
    assert re.search(r"; [1-9]\d* to go$", err.strip()), err
    kept = (*REPORTS, "targets/local/model_card.json", "targets/local/model.onnx")
    for name in kept:
        os.utime(out / name, (1_000_000_000, 1_000_000_000))
    _search(out, 3, resume=True)
    err = capsys.readouterr().err
    assert "none to go (the run is finished)" in err, err
    for name in kept:  # nothing new: not rewritten, with a new date
        assert (out / name).stat().st_mtime == 1_000_000_000, name


def test_resumed_line_counts_in_the_singular() -> None:
    result = SearchResult(Path("runs/x"), SearchSettings())
    result.trials = [
        TrialRecord(0, "c", "h0", records.MEASURED, latency_ms=1.0, accuracy=0.5),
        TrialRecord(1, "c", "h1", records.PRUNED_TRAINING),
        TrialRecord(2, "c", "h2", records.PRUNED_TRAINING),
    ]
    assert report.resumed_line(result, 25) == (
        "resumed runs/x: kept 1 measured trial, 2 pruned; 25 to go"
    )


# -- pareto.csv and the study's metric names ------------------------------------------------


def test_pareto_csv_holds_the_front_with_a_header(finished: Path) -> None:
    front = json.loads((finished / "pareto.json").read_text())["front"]
    with (finished / "pareto.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    header = (finished / "pareto.csv").read_text().splitlines()[0]
    assert header.split(",") == list(report.CSV_COLUMNS)
    assert front, "the tiny search measured nothing within a 50 ms budget"
    assert len(rows) == len(front)
    for row, member in zip(rows, front, strict=True):
        assert row["hash"] == member["hash"]
        assert int(row["trial"]) == member["trial"]
        assert float(row["accuracy"]) == pytest.approx(member["accuracy"])
        assert float(row["latency_ms"]) == pytest.approx(member["latency_ms"])
        assert row["candidate"] == member["candidate"]
        assert row["board"] == "local"


def test_the_local_study_names_its_metrics(finished: Path) -> None:
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{finished / 'study.db'}")
    assert study.metric_names == ["accuracy", "latency_ms"]


def test_a_shared_study_of_several_targets_names_each_latency(tmp_path: Path) -> None:
    from search.loop import objectives, shared

    storage = shared.open_storage(f"sqlite:///{tmp_path / 'shared.db'}")
    names = ["accuracy", "latency_ms[pi5]", "latency_ms[jetson]"]
    study = shared.create_or_load(
        storage,
        "s",
        optuna.samplers.RandomSampler(seed=0),
        objectives.directions(2),
        {"settings": {}},
        metric_names=names,
    )
    assert optuna.load_study(study_name="s", storage=storage).metric_names == names
    assert len(study.directions) == 3


# -- plots ----------------------------------------------------------------------------------


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every figure saved, as it was drawn (on the old code too: it saved to a path)."""
    figures: list[Figure] = []
    original = Figure.savefig

    def keep(self: Figure, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        figures.append(self)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures


def _result(latencies: list[float], budget: float) -> SearchResult:
    result = SearchResult(Path("."), SearchSettings(budgets=Budgets(latency_ms=budget)))
    result.board = "local"
    result.trials = [
        TrialRecord(i, f"c{i}", f"h{i}", records.MEASURED, latency_ms=lat, accuracy=0.5 + i / 10)
        for i, lat in enumerate(latencies)
    ]
    for r in result.trials:
        r.feasible = True
    return result


def test_pareto_png_zooms_to_the_points_and_marks_a_far_budget(
    tmp_path: Path, saved: list[Figure]
) -> None:
    report.plot(_result([0.1, 0.2, 0.3], 50.0), tmp_path / "pareto.png")
    (ax,) = saved[-1].axes
    assert ax.get_xlim()[1] < 1.0  # not out to the budget of 50 ms
    texts = [t.get_text() for t in ax.texts]
    assert any("budget 50 ms" in t for t in texts), texts


def test_pareto_png_draws_a_budget_near_the_points(tmp_path: Path, saved: list[Figure]) -> None:
    report.plot(_result([0.1, 0.2, 0.3], 0.25), tmp_path / "pareto.png")
    (ax,) = saved[-1].axes
    low, high = ax.get_xlim()
    assert low < 0.25 < high
    assert [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"] == [0.25]


def test_one_candidate_is_singular(tmp_path: Path, saved: list[Figure]) -> None:
    result = _result([0.1], 50.0)
    report.plot(result, tmp_path / "pareto.png")
    assert saved[-1].axes[0].get_title() == "1 candidate measured"
    assert "after 1 trial (" in report.final_line(result)


def _trace(rounds: int = 4, per: int = 40) -> dict[str, Any]:
    """A search that settles near its budget: E[latency] saws around it, each round's
    measured latency close to it (the old legend, placed "best", covered one of them)."""
    steps = [
        {
            "step": i,
            "expected_ms": 0.9 + 0.2 * (i % per) / per,
            "latency_aim_ms": 0.9,
            "lambda": 0.01 * i,
            "lambda_energy": None,
        }
        for i in range(per * rounds)
    ]
    measured = [1.05, 0.95, 1.0, 1.02, 0.97, 0.99]
    return {
        "strategy": "differentiable",
        "lambda_mode": "calibrated",
        "latency_budget_ms": 1.0,
        "band": [0.8, 1.0],
        "latency_stat": "p50",
        "steps": steps,
        "rounds": [
            {"start_step": r * per, "end_step": r * per + per - 1, "measured_ms": measured[r]}
            for r in range(rounds)
        ],
    }


def test_lambda_trace_legend_clears_the_measured_point_and_says_predicted(
    tmp_path: Path, saved: list[Figure]
) -> None:
    trace = _trace()
    lambda_trace.plot(trace, tmp_path / "lambda_trace.png")
    fig = saved[-1]
    top = fig.axes[0]
    points = [top.transData.transform((r["end_step"], r["measured_ms"])) for r in trace["rounds"]]
    for ax in fig.axes:
        legend = ax.get_legend()
        assert legend is not None
        box = legend.get_window_extent()
        assert not any(box.contains(x, y) for x, y in points), "a legend covers a measured point"
    assert "predicted" in top.get_ylabel()
    assert top.get_title().endswith("4 rounds")
    lambda_trace.plot(_trace(rounds=1), tmp_path / "lambda_trace.png")
    assert saved[-1].axes[0].get_title().endswith(", 1 round")


# -- hwnas report over garbage --------------------------------------------------------------


def _study(tmp_path: Path, record: Any) -> str:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    study = optuna.create_study(storage=url, study_name="s", directions=["maximize", "minimize"])
    study.set_user_attr("hwnas.comparable", record)
    return url


def _nest(tmp_path: Path, table: str, key: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    with sqlite3.connect(tmp_path / "shared.db") as db:
        db.execute(f"UPDATE {table} SET value_json = ? WHERE key = ?", (deep, key))


def _record() -> dict[str, Any]:
    return {"settings": json.loads(json.dumps(SearchSettings().resume_key()))}


@pytest.mark.parametrize(
    "case", ["no settings", "unknown setting", "bad train", "nested record", "nested trial"]
)
def test_report_over_malformed_study_attributes_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    record: Any = _record()
    if case == "no settings":
        record = {"space": {}}
    elif case == "unknown setting":
        record["settings"]["bogus"] = 1
    elif case == "bad train":
        record["settings"]["train"] = 7
    url = _study(tmp_path, record)
    if case == "nested record":
        _nest(tmp_path, "study_user_attributes", "hwnas.comparable")
    if case == "nested trial":
        study = optuna.load_study(study_name="s", storage=url)
        trial = study.ask()
        trial.set_user_attr("outcome", "measured")
        study.tell(trial, [0.5, 1.0])
        _nest(tmp_path, "trial_user_attributes", "outcome")
    code = main(["report", "--storage", url, "--study", "s", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hwnas: error: "), err


def test_report_over_trial_attributes_of_the_wrong_type_still_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _study(tmp_path, _record())
    study = optuna.load_study(study_name="s", storage=url)
    trial = study.ask()
    for key, value in {
        "outcome": "measured",
        "accuracy": "high",
        "latency_ms": [1],
        "feasible": "yes",
        "cost": [1, 2],
        "predicted": {"latency_ms": {"deep": 1}},
        "boards": 5,
        "reason": {"a": 1},
    }.items():
        trial.set_user_attr(key, value)
    study.tell(trial, [0.5, 1.0])
    out = tmp_path / "r"
    assert main(["report", "--storage", url, "--study", "s", "--out", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert (out / "summary.md").exists()
    assert (out / "pareto.csv").exists()
