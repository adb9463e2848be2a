"""``.ci/run``, the script CI runs, run for real by bash in a copy of its folder layout, with
the programs it starts (apt-get, python, pip, ruff, mypy) stood in for by small scripts
that log how they were called and exit as the test says: it runs the README's test command
exactly, then the slow tests as their own step, and fails when any step fails, when the
slow step collects nothing (pytest's exit 5), and when the install fails."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_COMMAND = 'pip install -c constraints.txt -e ".[test]" && python -m pytest'

#: each stand-in logs its name and arguments, then exits with $FAKE_<NAME>'s status (0 if
#: unset); python's own status depends on what it was asked to run
STAND_IN = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALL_LOG"
exit "${{{var}:-0}}"
"""
PYTHON = """#!/bin/sh
echo "python $*" >> "$CALL_LOG"
case "$*" in
  "-m pytest -m slow") exit "${FAKE_SLOW:-0}" ;;
  "-m pytest") exit "${FAKE_FAST:-0}" ;;
  "-m venv .venv") mkdir -p .venv/bin && : > .venv/bin/activate ;;
esac
exit 0
"""


def run_ci(tmp_path: Path, **status: int) -> tuple[int, list[str], str]:
    """Run a copy of .ci/run with every program it calls stood in for; (exit status, the
    calls in order, stderr). ``status``: FAKE_FAST, FAKE_SLOW, FAKE_PIP, FAKE_RUFF, ..."""
    repo, bin_dir = tmp_path / "repo", tmp_path / "bin"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    bin_dir.mkdir()
    for name in ("apt-get", "pip", "ruff", "mypy"):
        var = "FAKE_" + name.upper().replace("-", "_")
        (bin_dir / name).write_text(STAND_IN.format(var=var))
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_dir / "python").write_text(PYTHON)
    (bin_dir / "python3").write_text(PYTHON)
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CALL_LOG": str(log),
        **{k: str(v) for k, v in status.items()},
    }
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run(
        [bash, str(repo / ".ci" / "run")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, log.read_text().splitlines(), done.stderr


def test_the_readme_test_command_is_the_one_ci_runs() -> None:
    assert README_COMMAND in (ROOT / "README.md").read_text()
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert any(README_COMMAND in line and not line.lstrip().startswith("#") for line in lines)


def test_ci_runs_the_readme_command_then_the_slow_tests_then_the_linters(
    tmp_path: Path,
) -> None:
    code, calls, err = run_ci(tmp_path)
    assert code == 0, err
    tests = [c for c in calls if c.startswith(("pip install -c", "python -m pytest"))]
    assert tests == [
        "pip install -c constraints.txt -e .[test]",
        "python -m pytest",
        "python -m pytest -m slow",
    ]
    assert calls.index("python -m pytest -m slow") < calls.index("ruff check .")
    assert "mypy " in calls


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ({"FAKE_SLOW": 1}, "the slow tests (exit 1)"),
        ({"FAKE_SLOW": 5}, "the slow tests (none collected: exit 5)"),
        ({"FAKE_FAST": 1}, "the README's test command (exit 1)"),
        ({"FAKE_FAST": 5}, "the README's test command (exit 5)"),
        ({"FAKE_PIP": 1}, "the README's test command (exit 1)"),
        ({"FAKE_MYPY": 1}, "mypy"),
    ],
)
def test_any_failing_step_fails_ci_and_is_named(
    tmp_path: Path, status: dict[str, int], said: str
) -> None:
    code, calls, err = run_ci(tmp_path, **status)
    assert code != 0, (status, calls)
    assert f"ci: failed: {said}" in err
    # the other steps still ran: one failure does not hide another
    assert "python -m pytest -m slow" in calls
    assert "mypy " in calls


def test_the_script_is_executable() -> None:
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
