"""The README's two search examples, taken from README.md itself (so a test breaks when the
README drifts) and run one after the other in one directory, as a new user runs them: the
quick-start command, then "The search from Python". The default run cuts their trials (and
says so below); the slow test runs both exactly as printed."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
#: the real format of the search's last line (search/loop/report.py's final_line)
FINAL = re.compile(
    r"^Search finished after \d+ trials? \(\d+ measured on [\w.-]+(?: \(\d+ over budget\))?, "
    r"\d+ pruned(?: \(\d+ predicted over budget\))?(?:, \d+ failed)?"
    r"(?:; \d+ repeats? not measured again)?\)\. "
    r"Best: validation accuracy [\d.]+%, p50 latency [\d.]+ ms, "
    r"energy (?:n/a \(no power meter\)|[\d.]+ mJ.*)$"
)


def section(text: str, title: str) -> str:
    return text.split(f"\n{title}\n", 1)[1].split("\n## ", 1)[0]


def quick_start_command() -> list[str]:
    """The `hwnas search ...` of the quick start's first step, after its `pip install &&`."""
    block = re.search(r"```bash\n(.*?)```", section(README, "## Quick start"), re.S)
    assert block, "README.md's quick start has no bash block"
    lines = [ln for ln in block.group(1).splitlines() if ln and not ln.startswith("#")]
    install, _, command = lines[0].partition(" && ")
    assert install.startswith("pip install "), lines[0]
    argv = shlex.split(command)
    assert argv[:2] == ["hwnas", "search"], command
    return argv[1:]


def python_example() -> str:
    match = re.search(r"```python\n(.*?)```", section(README, "### The search from Python"), re.S)
    assert match, "README.md's 'The search from Python' has no python example"
    return match.group(1)


def cut(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced once: the cut must apply, or the README changed."""
    assert text.count(old) == 1, f"the README example no longer holds {old!r}"
    return text.replace(old, new)


def run_both(tmp_path: Path, command: list[str], example: str) -> None:
    hwnas = [sys.executable, "-m", "hwnas_bench.cli.main"]
    first = subprocess.run(
        [*hwnas, *command], cwd=tmp_path, capture_output=True, text=True, timeout=1800
    )
    assert first.returncode == 0, first.stderr
    last = first.stdout.strip().splitlines()[-1]
    assert FINAL.match(last), last
    assert (tmp_path / "runs" / "digits" / "best.onnx").is_file()
    second = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=1800
    )
    assert second.returncode == 0, second.stderr  # the old example refused runs/digits
    candidate, median = second.stdout.strip().splitlines()[0].rsplit(" ", 1)
    assert candidate.startswith("in8x8x1-")
    assert float(median) > 0


def test_the_readme_quick_start_command_is_what_the_parser_takes() -> None:
    from hwnas_bench.cli.main import build_parser

    args = build_parser().parse_args(quick_start_command())
    assert (args.dataset, args.latency_budget_ms, args.trials) == ("digits", 0.05, 40)
    assert args.out == Path("runs/digits")


def test_the_readme_final_lines_have_the_real_format() -> None:
    """The example last line of README.md and docs/search.md, against the format the
    search prints (which the runs below check against the real output)."""
    docs = (ROOT / "docs" / "search.md").read_text()
    for name, text in (("README.md", README), ("docs/search.md", docs)):
        shown = [ln for ln in text.splitlines() if ln.startswith("Search finished after")]
        assert shown, name
        for line in shown:
            assert FINAL.match(line), (name, line)


def test_readme_examples_one_after_the_other_with_their_trials_cut(tmp_path: Path) -> None:
    """Both examples as printed, in one directory, except: trials cut to 2 and epochs to 2
    (the Python example's in batches of 64) so that a default test run stays short. The
    slow test below runs them uncut."""
    command = quick_start_command()
    command[command.index("--trials") + 1] = "2"  # CUT: 40 -> 2 trials
    command += ["--epochs", "2"]  # CUT: the winner's final retraining 30 -> 6 epochs
    example = cut(python_example(), "trials=40", "trials=2")  # CUT
    example = cut(example, "epochs=10", "epochs=2, batch_size=64")  # CUT (64: fewer steps)
    run_both(tmp_path, command, example)


@pytest.mark.slow  # about 4 minutes on 2 cores
def test_readme_examples_one_after_the_other_exactly_as_printed(tmp_path: Path) -> None:
    run_both(tmp_path, quick_start_command(), python_example())
