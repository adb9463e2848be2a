"""`hwnas search` as users run it: a subprocess, its exit code, its last line, its files;
and --resume after the process is killed for real, by pid. The verb's other paths run
in-process through ``main`` (the same code, without paying torch's import again)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import statistics
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
    r"^Search finished after (\d+) trials? \((\d+) measured on local"
    r"(?: \(\d+ over budget\))?, (\d+) pruned.*\)\. "
    r"Best: validation accuracy [\d.]+%, p50 latency [\d.]+ ms, "
    r"energy n/a \(no power meter\)$"
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
    m = json.loads((out / "m.json").read_text())
    # the model measured is the file the search wrote, and the figure is its samples' median
    assert m["model"]["sha256"] == hashlib.sha256((out / "best.onnx").read_bytes()).hexdigest()
    samples = m["samples_ms"]
    assert m["latency"]["n"] == len(samples) >= m["settings"]["min_iterations"] > 0
    assert m["latency"]["median_ms"] == pytest.approx(statistics.median(samples), rel=1e-6)
    assert min(samples) <= m["latency"]["median_ms"] <= max(samples)


def test_configuration_mistakes_are_one_line_and_exit_2(tmp_path: Path, capsys: Any) -> None:
    proc = hwnas_here(capsys, "search", "--dataset", "digits")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "hwnas: error: the following arguments are required: --out (see hwnas search --help)"
    )
    config = tmp_path / "search.toml"
    config.write_text("trials = 3\nbudget = 2\n[space]\nnum_layers = [1, 2]\n")
    proc = hwnas_here(
        capsys, "search", "--config", str(config), "--dataset", "digits", "--out", str(tmp_path)
    )
    assert proc.returncode == 2
    assert "unknown settings budget (did you mean energy_budget_mj or latency_budget_ms or " in (
        proc.stderr
    )
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
    from search.training.data import load_dataset

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
    assert "--lambda 0.7 contradicts the run's 0.5" in proc.stderr


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
    from search.cli.search import compress_option
    from search.compress import CompressSettings

    table = {"tolerance": 0.5, "prune_ratios": [0.5], "methods": ["minmax"]}
    assert compress_option(table, None) == CompressSettings(
        tolerance=0.5, prune_ratios=(0.5,), methods=("minmax",)
    )
    assert compress_option(True, None) is True
    assert compress_option(False, None) is False


# --- what a new user meets: search.toml, input files, resume, Ctrl-C, help (issue 16) ---


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hwnas: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[space]\nnum_layers = [[1, 2]]\n", "[space] num_layers must be a value or an array"),
        ("[space]\nconv_kernels = [[3], [5]]\n", "[space] conv_kernels must be a value or an"),
        ("[space]\nfc_sizes = {a = 1}\n", "[space] fc_sizes must be a value or an array"),
        ("[space.extra]\na = 1\n", "unknown [space] settings extra (known: conv_channels, "),
        ("[space]\nconv_kernel = [3]\n", "unknown [space] settings conv_kernel (did you mean "),
        ("[compress]\nprune_ratios = [[0.5]]\n", "[compress] prune_ratios must be a value or"),
        ("trials = [[1]]\n", "trials must be an integer, not [[1]]"),
        ("[trials]\nn = 1\n", "trials must be an integer, not {'n': 1}"),
        ("latency_budget = 0.05\n", "unknown settings latency_budget (did you mean latency_bu"),
        ("out = 'runs/x'\n", "out is not a search.toml setting: the run directory is --out DIR"),
        ("trials = \n", "not valid TOML"),
    ],
)
def test_search_toml_nesting_and_unknown_keys_are_one_line(
    tmp_path: Path, capsys: Any, text: str, said: str
) -> None:
    config = tmp_path / "search.toml"
    config.write_text(text)
    argv = ["search", "--config", str(config), "--dataset", "digits", "--out", str(tmp_path / "r")]
    line = _one_error_line(hwnas_here(capsys, *argv))
    assert said in line, line
    assert not (tmp_path / "r").exists()  # refused before anything was made


def _limited_memory() -> None:  # a config read without a cap would take all of it
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_a_config_that_is_not_a_regular_file_is_refused_unread(tmp_path: Path) -> None:
    """/dev/zero never ends, a FIFO blocks the open, a directory is no file, a huge file
    is no search.toml: each is one line, at once (a subprocess: the old code read /dev/zero
    until memory ran out)."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (2 << 20) + "\n")
    for config, said in (
        ("/dev/zero", "--config /dev/zero: not a regular file"),
        (str(fifo), f"--config {fifo}: not a regular file"),
        (str(tmp_path), f"--config {tmp_path}: is a directory, not a file"),
        (str(big), f"--config {big}: larger than 1024 KiB, not a search.toml"),
    ):
        proc = subprocess.run(
            [*HWNAS, "search", "--config", config, "--dataset", "digits", "--out", "r"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            preexec_fn=_limited_memory,
            check=False,
        )
        assert _one_error_line(proc) == f"hwnas: error: {said}"


def test_missing_input_files_exit_2_naming_the_flag(tmp_path: Path, capsys: Any) -> None:
    out = str(tmp_path / "r")
    for argv, said in (
        (["--data", str(tmp_path / "none.npz")], f"--data {tmp_path / 'none.npz'}: no such file"),
        (["--data", str(tmp_path)], f"--data {tmp_path}: is a directory, not a file"),
        (
            ["--dataset", "digits", "--config", str(tmp_path / "none.toml")],
            f"--config {tmp_path / 'none.toml'}: no such file",
        ),
    ):
        line = _one_error_line(hwnas_here(capsys, "search", *argv, "--out", out))
        assert line == f"hwnas: error: {said}"


def test_resume_takes_every_setting_from_the_run(tmp_path: Path, capsys: Any) -> None:
    """`--resume --out DIR` alone continues the run with its own settings (search.json) and
    data (command.json); `--trials` may grow; a flag that contradicts the run is refused,
    naming the flag."""
    from search.training.data import load_dataset

    d = load_dataset("digits")
    data = tmp_path / "train.npz"
    np.savez(data, x=d.x[:300], y=d.y[:300])
    out = tmp_path / "run"
    first = [
        "search", "--data", str(data), "--strategy", "random", "--seed", "3", "--epochs", "1",
        "--batch-size", "16", "--min-time", "0.05", "--latency-budget-ms", "50",
        "--optimizer", "sgd", "--trials", "2", "--out", str(out), "-q",
    ]  # fmt: skip
    proc = hwnas_here(capsys, *first)
    assert proc.returncode == 0, proc.stderr
    before = json.loads((out / "search.json").read_text())
    assert before["settings"]["train"]["batch_size"] == 16  # not a default: it must be kept
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.MonkeyPatch.context() as mp:  # the data path was recorded absolute
        mp.chdir(elsewhere)
        proc = hwnas_here(capsys, "search", "--resume", "--out", str(out), "--trials", "3", "-q")
    assert proc.returncode == 0, proc.stderr
    assert FINAL.match(proc.stdout.strip().splitlines()[-1]), proc.stdout
    after = json.loads((out / "search.json").read_text())
    assert after == {**before, "trials": 3}
    assert len([t for t in _trials(out) if t.state.is_finished()]) >= 3
    for flag, value, theirs in (("--seed", "4", "3"), ("--optimizer", "adam", "'sgd'")):
        proc = hwnas_here(capsys, "search", "--resume", "--out", str(out), flag, value)
        line = _one_error_line(proc)
        assert f"{flag} " in line, line
        assert f"contradicts the run's {theirs}" in line, line
    assert json.loads((out / "search.json").read_text()) == after  # refused: nothing changed


def test_ctrl_c_says_how_to_continue_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "run dir"
    args = ["search", *QUICK, "--strategy", "random", "--trials", "30", "--out", str(out)]
    proc = subprocess.Popen(
        [*HWNAS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:  # wait on the pipe until a trial has finished
        if line.startswith("trial "):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"hwnas: interrupted; continue the search with: hwnas search --resume --out '{out}'"
    )


def test_help_shows_every_default_and_that_out_is_required(capsys: Any) -> None:
    from search.cli.search import DEFAULTS

    proc = hwnas_here(capsys, "search", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())  # argparse wraps lines
    usage = text.split(" Train candidates")[0]
    assert " --out DIR " in usage
    assert "[--out" not in usage  # required: no brackets
    assert "--out DIR required: the run directory" in text
    for key, value in DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        block = text.split(f" {flag} ", 1)[1].split(" --", 1)[0]
        if value not in (None, False) and not isinstance(value, bool):
            assert f"default: {value}" in block, (flag, block)
        elif key not in ("dataset", "data", "out"):  # one of the two data flags is needed
            assert "default" in block, (flag, block)


def _leaf_commands() -> list[tuple[list[str], Any]]:
    """(argv to reach it, parser) of every hwnas verb, nested ones included."""
    import argparse

    from hwnas_bench.cli.main import build_parser

    found: list[tuple[list[str], Any]] = []

    def walk(path: list[str], parser: argparse.ArgumentParser) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found.append((path, parser))
        for sub in subs:
            for name, child in sub.choices.items():
                walk([*path, name], child)

    walk([], build_parser())
    return found


def test_every_verb_answers_an_unknown_option_with_the_closest_one(capsys: Any) -> None:
    verbs = _leaf_commands()
    assert {"search", "bench", "compress", "deploy", "report"} <= {p[0] for p, _ in verbs}
    for path, parser in verbs:
        argv = list(path)
        option = None
        for action in parser._actions:
            longs = [s for s in action.option_strings if s.startswith("--") and s != "--help"]
            if not action.option_strings:  # a positional: any value of it
                argv.append(str(next(iter(action.choices))) if action.choices else "1")
            elif action.required:
                argv += [longs[0], "1"]
            elif option is None and longs and len(longs[0]) > 6:
                option = longs[0]
        option = option or "--help"  # a verb with no option of its own (agent build)
        typo = option[:-2] + option[-1] + option[-2]  # the last two letters swapped
        proc = hwnas_here(capsys, *argv, typo)
        line = _one_error_line(proc)
        assert f"unrecognized arguments: {typo}" in line, (path, line)
        assert f"(did you mean {option}?)" in line, (path, line)
        assert line.endswith(f"(see hwnas {' '.join(path)} --help)"), line


def test_the_final_line_says_validation_accuracy(tmp_path: Path, capsys: Any) -> None:
    proc = hwnas_here(
        capsys, "search", *QUICK, "--strategy", "random", "--trials", "1", "--out",
        str(tmp_path / "r"), "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert " Best: validation accuracy " in proc.stdout.strip().splitlines()[-1]


def test_the_training_recipe_flags_are_checked_and_an_old_run_resumes_with_its_loop(
    tmp_path: Path, capsys: Any
) -> None:
    """--schedule, --weight-decay, --label-smoothing, --augment, --flip-ok, --final-epochs
    reach the record; a bad value is one line, exit 2; a search.json from before the recipe
    (no such keys) resumes with the constant loop it trained with, unchanged, and a flag
    that contradicts that loop is refused."""
    out = tmp_path / "run"
    for flags, said in (
        (("--weight-decay", "-1"), "weight_decay must be >= 0"),
        (("--label-smoothing", "1"), "label_smoothing must be < 1"),
        (("--final-epochs", "-2"), "final_epochs must be >= 0"),
    ):
        proc = hwnas_here(capsys, "search", *QUICK, "--out", str(out), *flags)
        assert said in _one_error_line(proc), flags
    proc = hwnas_here(capsys, "search", *QUICK, "--out", str(out), "--schedule", "linear")
    assert proc.returncode == 2
    assert "invalid choice: 'linear'" in proc.stderr
    first = [
        "search", *QUICK, "--strategy", "random", "--trials", "1", "--latency-budget-ms", "50",
        "--schedule", "constant", "--weight-decay", "0.001", "--label-smoothing", "0.1",
        "--augment", "shift", "--flip-ok", "--final-epochs", "0", "--out", str(out), "-q",
    ]  # fmt: skip
    proc = hwnas_here(capsys, *first)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "search.json").read_text())
    train = record["settings"]["train"]
    assert "schedule" not in train  # constant, as every run before the recipe: not written
    assert "final_epochs" not in train
    assert (train["weight_decay"], train["label_smoothing"]) == (0.001, 0.1)
    assert (train["augment"], train["flips"]) == ("shift", True)
    card = json.loads((out / "targets" / "local" / "model_card.json").read_text())
    assert card["final"] is None  # --final-epochs 0: the searched model ships
    for key in ("weight_decay", "label_smoothing", "augment", "flips"):
        del train[key]  # now it is a record from before the recipe
    (out / "search.json").write_text(json.dumps(record, indent=2))
    proc = hwnas_here(capsys, "search", "--resume", "--out", str(out), "--trials", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    after = json.loads((out / "search.json").read_text())
    assert after == {**record, "trials": 2}  # resumed with the old loop, as it was
    proc = hwnas_here(capsys, "search", "--resume", "--out", str(out), "--schedule", "cosine")
    assert "--schedule 'cosine' contradicts the run's 'constant'" in _one_error_line(proc)
