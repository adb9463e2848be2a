"""`hwnas search` as users run it: a subprocess, its exit code, its last line, its files;
and --resume after the process is killed for real, by pid. The verb's other paths run
in-process through ``main`` (the same code, without paying torch's import again)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

HWNAS = [sys.executable, "-m", "hwnas_bench.cli.main"]
QUICK = ["--dataset", "digits", "--epochs", "1", "--min-time", "0.05"]
FINAL = re.compile(
    r"^Search finished after (\d+) trials \((\d+) measured on local"
    r"(?: \(\d+ over budget\))?, (\d+) pruned.*\)\. "
    r"Best: accuracy [\d.]+%, p50 latency [\d.]+ ms, energy n/a \(no power meter\)$"
)


def hwnas(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HWNAS, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def hwnas_here(capsys: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """``hwnas ARGS`` in this process: its exit code, stdout and stderr, as ``hwnas`` gives."""
    from hwnas_bench.cli.main import main

    capsys.readouterr()
    code = main(list(args))
    said = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, said.out, said.err)


def test_search_verb_runs_and_ends_with_the_one_line_summary(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "run"
    proc = hwnas("search", *QUICK, "--trials", "3", "--latency-budget-ms", "50", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    match = FINAL.match(last)
    assert match, last
    assert match[1] == "3"
    assert "Test accuracy of the best model" in proc.stdout
    assert proc.stdout.count("trial ") >= 3  # one line per trial when not on a terminal
    for name in ("study.db", "measurements.jsonl", "pareto.json", "best.onnx", "summary.md"):
        assert (out / name).is_file(), name
    # best.onnx, measured again independently, meets the budget
    again = hwnas_here(
        capsys, "bench", str(out / "best.onnx"), "--threads", "1", "--json", str(out / "m.json")
    )
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "m.json").read_text())["latency"]["median_ms"] <= 50.0


def test_configuration_mistakes_are_one_line_and_exit_2(tmp_path: Path, capsys: Any) -> None:
    proc = hwnas_here(capsys, "search", "--dataset", "digits")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "hwnas: error: give --out runs/NAME (the run directory)"
    config = tmp_path / "search.toml"
    config.write_text("trials = 3\nbudget = 2\n[space]\nnum_layers = [1, 2]\n")
    proc = hwnas_here(
        capsys, "search", "--config", str(config), "--dataset", "digits", "--out", str(tmp_path)
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("unknown settings budget")
    config.write_text('[space]\nlayer_types = ["conv", "lstm"]\n')
    proc = hwnas_here(
        capsys, "search", "--config", str(config), "--dataset", "digits", "--out", str(tmp_path)
    )
    assert proc.returncode == 2
    assert "unknown layer types ['lstm']" in proc.stderr


def test_an_infeasible_budget_is_a_message_not_a_crash(tmp_path: Path, capsys: Any) -> None:
    proc = hwnas_here(
        capsys,
        "search",
        *QUICK,
        "--trials",
        "2",
        "--latency-budget-ms",
        "0.000001",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert re.search(
        r"No candidate met the budget: the smallest p50 latency measured was [\d.]+ ms, "
        r"over the budget of 1e-06 ms\.",
        proc.stdout,
    ), proc.stdout


def _trials(out: Path) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out}/study.db")
    return study.get_trials()


@pytest.mark.slow
def test_resume_after_a_kill_loses_nothing_and_remeasures_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["search", *QUICK, "--strategy", "random", "--trials", "8", "--out", str(out)]
    proc = subprocess.Popen(
        [*HWNAS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    seen = 0
    for line in proc.stdout:  # wait on the pipe: a line per finished trial
        seen += line.startswith("trial ")
        if seen == 3:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    before = {t.number: t for t in _trials(out) if t.state.is_finished()}
    assert len(before) >= 3
    measured_before = (out / "measurements.jsonl").read_text().splitlines()

    done = hwnas(*args, "--resume")
    assert done.returncode == 0, done.stderr
    after = {t.number: t for t in _trials(out)}
    for number, t in before.items():  # no finished trial lost or changed
        assert after[number].state == t.state
        assert after[number].values == t.values
        assert after[number].user_attrs == t.user_attrs
    outcomes = [t.user_attrs.get("outcome") for t in after.values()]
    assert len([o for o in outcomes if o not in (None, "duplicate")]) == 8  # repeats don't count
    lines = (out / "measurements.jsonl").read_text().splitlines()
    assert lines[: len(measured_before)] == measured_before
    hashes = [json.loads(line)["hash"] for line in lines]
    assert len(hashes) == len(set(hashes))  # nothing measured twice
    assert FINAL.match(done.stdout.strip().splitlines()[-1])


def test_npz_data_and_a_search_toml(tmp_path: Path, capsys: Any) -> None:
    from search.data import load_dataset

    d = load_dataset("digits")
    assert d.x_test is not None
    assert d.y_test is not None
    np.savez(tmp_path / "train.npz", x=d.x[:300], y=d.y[:300], x_test=d.x_test, y_test=d.y_test)
    config = tmp_path / "search.toml"
    config.write_text(
        'trials = 2\nepochs = 1\nmin_time = 0.05\nstrategy = "random"\n'
        '[space]\nnum_layers = [1, 2]\nlayer_types = ["conv", "fc"]\nconv_channels = [4]\n'
    )
    out = tmp_path / "run"
    proc = hwnas_here(
        capsys,
        "search",
        "--config",
        str(config),
        "--data",
        str(tmp_path / "train.npz"),
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "Test accuracy of the best model" in proc.stdout
    assert FINAL.match(proc.stdout.strip().splitlines()[-1])
    record = json.loads((out / "search.json").read_text())
    assert record["trials"] == 2
    assert record["settings"]["strategy"] == "random"
    assert record["space"]["layer_types"] == ["conv", "fc"]
    assert record["space"]["num_layers"] == [1, 2]


def test_a_differentiable_search_with_a_fixed_lambda_from_the_command_line(
    tmp_path: Path, capsys: Any
) -> None:
    """`--strategy differentiable --lambda X`: one round, λ constant in the trace, the
    derived model measured; the run records λ so a resume must match it."""
    config = tmp_path / "search.toml"
    config.write_text(
        '[space]\nnum_layers = [1, 2]\nlayer_types = ["conv"]\nconv_kernels = [3]\n'
        "conv_channels = [4, 8]\n"
    )
    out = tmp_path / "run"
    args = ["search", "--config", str(config), *QUICK, "--strategy", "differentiable"]
    proc = hwnas_here(capsys, *args, "--lambda", "0.5", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert FINAL.match(proc.stdout.strip().splitlines()[-1]), proc.stdout
    trace = json.loads((out / "lambda_trace.json").read_text())
    assert {step["lambda"] for step in trace["steps"]} == {0.5}
    assert len(trace["rounds"]) == 1
    assert trace["rounds"][0]["measured_ms"] > 0
    assert (out / "lambda_trace.png").is_file()
    assert (
        json.loads((out / "search.json").read_text())["settings"]["strategy_options"]["lambda"]
        == 0.5
    )
    proc = hwnas_here(capsys, *args, "--lambda", "0.7", "--out", str(out), "--resume")
    assert proc.returncode == 2
    assert "strategy_options.lambda" in proc.stderr


@pytest.mark.slow  # 16 s; the step itself runs by default in test_search_compress.py and
# test_several_targets.py, and the [compress] table's parsing below
def test_search_with_compress_ships_the_chosen_variant_in_the_target_folder(
    tmp_path: Path,
) -> None:
    """--compress with a [compress] table in search.toml (its settings; alone, the table
    turns compression on too): the last step measures the variants on the board and the
    target folder holds the one chosen, with its card."""
    config = tmp_path / "search.toml"
    config.write_text(
        '[compress]\nprune_ratios = [0.5]\nmethods = ["minmax"]\nrounds = 2\n'
        "fine_tune_epochs = 1\ncalibration_samples = 64\n"
        '[space]\nlayer_types = ["conv"]\nnum_layers = [1, 1]\n'
    )
    out = tmp_path / "run"
    proc = hwnas(
        "search", *QUICK, "--trials", "2", "--config", str(config), "--compress", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert "compress: measuring " in proc.stderr
    card = json.loads((out / "targets" / "local" / "model_card.json").read_text())
    compression = card["compression"]
    assert compression is not None
    variant = compression["variant"]
    assert f"Model for local: {out / 'targets' / 'local' / 'model.onnx'} ({variant}," in proc.stdout
    report = json.loads((out / compression["report"]).read_text())
    assert report["chosen"] == variant
    assert set(compression["not_chosen"]) == {v["name"] for v in report["variants"]} - {variant}
    assert set(report["settings"]["prune_ratios"]) == {0.5}  # the table's settings
    assert {v["name"] for v in report["variants"]} >= {"fp32", "int8", "pruned50"}
    assert FINAL.match(proc.stdout.strip().splitlines()[-1])  # still the last line


def test_compress_settings_mistakes_are_one_line_and_exit_2(tmp_path: Path, capsys: Any) -> None:
    from hwnas_bench.cli.main import main

    for text, said in (
        ('compress = "yes"\n', "compress must be true, false or a [compress] table"),
        ("[compress]\ntolerence = 1\n", "unknown [compress] settings tolerence"),
        ("[compress]\nprune_ratios = [1.5]\n", "pruning ratios must be in (0, 1)"),
        ('[compress]\ntolerance = "x"\n', "[compress]:"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        argv = ["search", *QUICK, "--config", str(bad), "--out", str(tmp_path / "r2")]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert said in err
        assert len(err.strip().splitlines()) == 1
    from search.cli import compress_option
    from search.compress import CompressSettings

    table = {"tolerance": 0.5, "prune_ratios": [0.5], "methods": ["minmax"]}
    assert compress_option(table, None) == CompressSettings(
        tolerance=0.5, prune_ratios=(0.5,), methods=("minmax",)
    )
    assert compress_option(True, None) is True
    assert compress_option(False, None) is False
