"""Data and settings a careless user (or an attacker) gives the search: refused before any
training, with one clear line, never a garbage result or a crash."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hwnas_bench.cli.main import main
from search import Searcher, SearchSpace
from search.errors import DataError, SettingsError

SPACE = dict(input_shape=(8, 8, 1), num_layers=1, layer_types=["fc"], fc_sizes=[8])


def _data(n: int = 40, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1), dtype=np.float32), np.arange(n) % classes


def _searcher(tmp_path: Path, **kwargs: object) -> Searcher:
    return Searcher(
        SearchSpace(**SPACE), trials=1, epochs=1, batch_size=64, out=tmp_path / "run", **kwargs
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_pixels_are_refused(tmp_path: Path, bad: float) -> None:
    x, y = _data()
    x[3, 2, 2, 0] = bad
    with pytest.raises(DataError, match="non-finite"):
        _searcher(tmp_path).search(x, y)
    assert not (tmp_path / "run" / "measurements.jsonl").exists()  # nothing was measured


def test_labels_that_skip_most_numbers_are_refused(tmp_path: Path) -> None:
    x, _ = _data(30)
    y = np.array([0, 1_000_000, 2_000_000] * 10)  # would build a 2-million-way classifier
    with pytest.raises(DataError, match=r"class indices 0\.\.k-1"):
        _searcher(tmp_path).search(x, y)


@pytest.mark.parametrize("labels", [np.zeros(40, dtype=int), np.array(["a"] * 40)])
def test_one_class_or_string_labels_are_refused(tmp_path: Path, labels: np.ndarray) -> None:
    x, _ = _data()
    with pytest.raises(DataError, match="labels"):
        _searcher(tmp_path).search(x, labels)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"constraints": {"latency_ms": math.nan}}, "finite number > 0"),
        ({"constraints": {"latency_ms": math.inf}}, "finite number > 0"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"trials": 2.5}, "trials must be an integer"),
    ],
)
def test_bad_settings_are_refused_at_once(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Searcher(SearchSpace(**SPACE), out=tmp_path / "run", **kwargs)  # type: ignore[arg-type]


def test_a_numpy_budget_is_a_number(tmp_path: Path) -> None:
    searcher = Searcher(SearchSpace(**SPACE), constraints={"latency_ms": np.float32(2.0)})
    assert searcher.settings.budgets.to_mapping() == {"latency_ms": 2.0}


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("trials = true", "trials must be an integer"),
        ('trials = "three"', "trials must be an integer"),
        ("epochs = 1.5", "epochs must be an integer"),
        ("space = 5", "space must be a table"),
        ("data = 5", "data must be a string"),
    ],
)
def test_search_toml_values_of_the_wrong_type_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, message: str
) -> None:
    config = tmp_path / "search.toml"
    config.write_text(toml + "\n")
    code = main(["search", "--config", str(config), "--dataset", "digits", "--out", "r"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


def test_out_that_is_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "taken"
    afile.write_text("")
    assert main(["search", "--dataset", "digits", "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("test_part", "message"),
    [
        ({"x_test": np.zeros((5, 8, 8, 1)), "y_test": np.zeros(4, dtype=int)}, "5 samples"),
        ({"x_test": np.zeros((5, 8, 8, 1)), "y_test": np.full(5, 7)}, "label 7"),
        ({"x_test": np.zeros((5, 8, 8, 1))}, "come together"),
    ],
)
def test_a_bad_test_split_is_refused_before_the_search(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    test_part: dict[str, np.ndarray],
    message: str,
) -> None:
    x, y = _data()
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y, **test_part)
    out = tmp_path / "run"
    code = main(["search", "--data", str(path), "--out", str(out), "--trials", "1", "-q"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (out / "measurements.jsonl").exists()  # refused before anything ran


def test_a_second_search_in_a_running_directory_is_refused(tmp_path: Path) -> None:
    """The lock is held by another process for real, as a running search holds it."""
    import subprocess
    import sys

    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from search.loop.run_lock import run_dir_lock\n"
            "with run_dir_lock(Path(sys.argv[1])):\n"
            "    print('held', flush=True); sys.stdin.read()\n",
            str(out),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        x, y = _data()
        with pytest.raises(SettingsError, match=f"another search is running .*pid {holder.pid}"):
            _searcher(tmp_path).search(x, y)
    finally:
        holder.communicate("")  # releases the lock and exits
    assert not (out / "study.db").exists()  # the refused search wrote nothing


def test_resume_with_nothing_to_resume_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = _data()
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    out = tmp_path / "typo"
    args = ["search", "--data", str(path), "--out", str(out), "--trials", "1", "--epochs", "1"]
    main([*args, "--min-time", "0.02", "--resume", "-q"])
    assert f"nothing to resume in {out}; starting a new search" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lambda", "0.5"], "--lambda weighs the differentiable search's loss"),
        (["--strategy", "differentiable", "--lambda", "-1"], "lambda"),
        (["--strategy", "differentiable", "--lambda", "nan"], "lambda"),
    ],
)
def test_predictor_and_lambda_mistakes_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = str(tmp_path / "r")
    assert main(["search", "--dataset", "digits", "--out", out, *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


def test_a_search_toml_predictor_must_be_on_or_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "search.toml"
    config.write_text('predictor = "yes"\n')
    code = main(["search", "--config", str(config), "--dataset", "digits", "--out", "r"])
    assert code == 2
    assert "predictor must be on or off, not 'yes'" in capsys.readouterr().err
