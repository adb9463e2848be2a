"""Every search verb ends a mistake the same way: ``hwnas search``, ``compress`` and ``deploy``
turn the same error into the same ``hwnas: error:`` line and the same exit code (one handler,
:mod:`search.cli.errors`), through the real ``hwnas`` main."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def hwnas_here(capsys: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """``hwnas ARGS`` in this process: its exit code, stdout and stderr, as ``hwnas`` gives."""
    from hwnas_bench.cli.main import main

    capsys.readouterr()
    code = main(list(args))
    said = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, said.out, said.err)


def verbs(tmp_path: Path) -> dict[str, list[str]]:
    """The argv of each verb, complete but for the mistake a test adds; each reads hwnas.toml
    (search and compress to reach their board, deploy its --config) before any data."""
    run = tmp_path / "run"
    return {
        "search": ["search", "--dataset", "digits", "--out", str(run)],
        "compress": [
            "compress",
            str(tmp_path / "m.onnx"),
            "--calibration",
            str(tmp_path / "c.npz"),
        ],
        "deploy": ["deploy", str(run), "--target", "local", "--config", os.environ["HWNAS_CONFIG"]],
    }


@pytest.fixture
def hwnas_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$HWNAS_CONFIG, the board configuration every verb reads (its text is the test's)."""
    config = tmp_path / "hwnas.toml"
    config.write_text('[boards.pi]\ntransport = "ssh"\nhost = "127.0.0.1"\nport = 1\n')
    monkeypatch.setenv("HWNAS_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)  # no hwnas.toml of the checkout's is found instead
    return config


def not_toml(config: Path) -> str:
    """The line for a hwnas.toml that reads ``boards = [``."""
    return f"hwnas: error: {config}: not valid TOML: Invalid value (at end of document)"


def one_line(proc: subprocess.CompletedProcess[str]) -> tuple[int, str]:
    """(exit code, the one stderr line); nothing on stdout, no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert proc.stdout == ""
    return proc.returncode, lines[0]


def test_a_config_that_does_not_parse_is_the_same_line_and_exit_2_from_every_verb(
    hwnas_toml: Path, tmp_path: Path, capsys: Any
) -> None:
    hwnas_toml.write_text("boards = [\n")
    said = {verb: one_line(hwnas_here(capsys, *argv)) for verb, argv in verbs(tmp_path).items()}
    assert said == dict.fromkeys(said, (2, not_toml(hwnas_toml)))


@pytest.mark.parametrize(
    ("mistake", "said"),
    [
        (["--target", "nope"], "no board named 'nope' in {config}; known: local, pi"),
        (["--min-time", "-1"], "bad measurement setting: min_time_s must be a number >= 0"),
    ],
)
def test_a_flag_mistake_is_the_same_line_and_exit_2_from_search_and_compress(
    hwnas_toml: Path, tmp_path: Path, capsys: Any, mistake: list[str], said: str
) -> None:
    """(deploy has no --min-time, and reads the run's targets/<name>/ before its board:
    test_deploy.py pins its lines.)"""
    argv = verbs(tmp_path)
    lines = {
        verb: one_line(hwnas_here(capsys, *argv[verb], *mistake)) for verb in ("search", "compress")
    }
    expected = (2, "hwnas: error: " + said.format(config=hwnas_toml))
    assert lines == dict.fromkeys(lines, expected)


def test_a_lease_timeout_that_is_not_positive_is_one_line_and_exit_2(
    hwnas_toml: Path, tmp_path: Path, capsys: Any
) -> None:
    proc = hwnas_here(capsys, *verbs(tmp_path)["deploy"], "--lease-timeout", "0")
    assert one_line(proc) == (2, "hwnas: error: --lease-timeout must be > 0 seconds, not 0.0")


def test_verbose_adds_the_traceback_after_the_same_line_in_every_verb(
    hwnas_toml: Path, tmp_path: Path, capsys: Any
) -> None:
    """``hwnas -v``: the full detail, as the host's verbs give it (deploy used to drop it)."""
    hwnas_toml.write_text("boards = [\n")
    for verb, argv in verbs(tmp_path).items():
        proc = hwnas_here(capsys, "-v", *argv)
        assert proc.returncode == 2, (verb, proc.stderr)
        lines = proc.stderr.splitlines()
        assert lines[0] == not_toml(hwnas_toml), (verb, lines)
        assert "Traceback (most recent call last):" in lines[1:], (verb, proc.stderr)


def test_ctrl_c_is_exit_130_from_every_verb_and_the_search_says_how_to_go_on(
    hwnas_toml: Path, tmp_path: Path, capsys: Any
) -> None:
    """A real SIGINT while the verb waits to read its hwnas.toml (a FIFO: the read blocks
    until this test's writer, which interrupts the reader once it is there)."""
    hwnas_toml.unlink()
    os.mkfifo(hwnas_toml)

    def interrupt_the_reader() -> None:
        with open(hwnas_toml, "w"):  # returns once the verb has opened the config
            os.kill(os.getpid(), signal.SIGINT)

    said = {}
    for verb, argv in verbs(tmp_path).items():
        writer = threading.Thread(target=interrupt_the_reader)
        writer.start()
        said[verb] = one_line(hwnas_here(capsys, *argv))
        writer.join(30)
    again = f"hwnas search --resume --out {tmp_path / 'run'}"
    assert said == {
        "search": (130, f"hwnas: interrupted; continue the search with: {again}"),
        "compress": (130, "hwnas: interrupted"),
        "deploy": (130, "hwnas: interrupted"),
    }


def test_only_the_handler_writes_the_error_line_or_picks_an_exit_code() -> None:
    """No verb makes its own ``hwnas: error:`` line, nor returns 2 or 130 by hand."""
    for path in sorted((ROOT / "search" / "cli").glob("*.py")):
        if path.name == "errors.py":
            continue
        text = path.read_text()
        for hand_made in ("hwnas: error:", "return 2", "return 130", "exit_code_for"):
            assert hand_made not in text, (path.name, hand_made)
