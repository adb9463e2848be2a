"""What a new user meets first: the README's pytest example, relative model paths, boards
that are missing, down or busy, and the lines the summary prints."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "examples" / "models"
FAST = "min_iterations=10, min_time_s=0.05, warmup_min_s=0.0"


def readme_pytest_example() -> str:
    """The first python block of the README's "In pytest" section, exactly as printed."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## In pytest\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md's 'In pytest' section has no python example"
    return match.group(1)


def test_readme_pytest_example_runs_on_a_fresh_checkout(pytester: pytest.Pytester) -> None:
    """Copied verbatim, with the models it names, and run with plain `pytest` on `local`:
    every test passes or is skipped with a reason (no board has the tag 'jetson' here)."""
    example = readme_pytest_example()
    assert 'hw_bench("models/convnet.onnx"' in example  # a path relative to the test file
    pytester.makepyfile(test_models=example)
    shutil.copytree(MODELS, pytester.path / "models")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    outcomes = result.parseoutcomes()
    assert not outcomes.get("failed"), result.stdout.str()
    assert not outcomes.get("errors"), result.stdout.str()
    assert outcomes.get("skipped") == 1  # the jetson test; every other one ran and passed
    tests = re.findall(r"^def test_", example, re.MULTILINE)
    assert outcomes.get("passed") == len(tests) - 1, result.stdout.str()
    result.stdout.fnmatch_lines(["*SKIPPED*test_models.py:*no board has the tag 'jetson'*"])


def test_marker_target_that_names_nothing_is_skipped_with_the_reason(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_t="""
import pytest

@pytest.mark.hw(targets=["pi9"])
def test_named(hw_target):
    pass

@pytest.mark.hw(targets=["tag:jetson"])
def test_tagged(hw_target):
    pass
"""
    )
    result = pytester.runpytest("-rs", "--hw-skip-unreachable")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        ["*SKIPPED*no board named 'pi9'*", "*SKIPPED*no board has the tag 'jetson'*"]
    )


DOWN_BOARDS = """
[boards.down-1]
transport = "ssh"
host = "127.0.0.1"
port = 1
timeout = 2
tags = ["gone"]

[boards.down-2]
transport = "ssh"
host = "127.0.0.1"
port = 1
timeout = 2
tags = ["gone"]
"""


def _mark_unhealthy(lock_dir: Path, *boards: str) -> None:
    for board in boards:
        (lock_dir / f"{board}.health").write_text(
            json.dumps(
                {"consecutive_failures": 3, "last_error": "connect: refused", "last_ok": None}
            )
        )


def test_tag_lease_with_every_board_down_skips_or_fails_at_once(
    pytester: pytest.Pytester, private_lock_dir: Path
) -> None:
    """Waiting cannot help when no board of the tag is healthy: the test ends at once
    (well inside the lease timeout) with the reason, skipped under --hw-skip-unreachable."""
    pytester.makefile(".toml", hwnas=DOWN_BOARDS)
    pytester.makepyfile(test_t="def test_t(hw_target): pass")
    _mark_unhealthy(private_lock_dir, "down-1", "down-2")
    result = pytester.runpytest(
        "--hw-target", "tag:gone", "--hw-skip-unreachable", "-rs", "--hw-lease-timeout", "120"
    )
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*no healthy board for tag:gone*down-1*"])
    assert result.duration < 60  # it did not wait out the 120 s lease timeout
    result = pytester.runpytest("--hw-target", "tag:gone", "--hw-lease-timeout", "120")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["hwnas: no healthy board for tag:gone: down-1 *; down-2 *"])
    assert result.duration < 60


def test_waiting_for_a_busy_board_is_said_while_it_waits(
    pytester: pytest.Pytester, private_lock_dir: Path
) -> None:
    """A healthy board held by someone else: the wait is announced on the terminal (past
    pytest's output capture), naming the board."""
    from hwnas_bench.locks import BoardLock

    pytester.makefile(".toml", hwnas='[boards.a]\ntransport = "local"\n')
    pytester.makepyfile(test_t="def test_t(hw_target): pass")
    lock = BoardLock(private_lock_dir, "a")
    assert lock.try_acquire("someone else's benchmark")
    try:
        result = pytester.runpytest("--hw-target", "a", "--hw-lease-timeout", "0.5")
    finally:
        lock.release()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["hwnas: waiting for a: a held by pid *someone else's benchmark)"])


def test_relative_model_paths_resolve_against_the_test_file(pytester: pytest.Pytester) -> None:
    """`hw_bench("models/x.onnx")` in tests/test_x.py finds tests/models/x.onnx wherever
    pytest is started from."""
    tests = pytester.mkdir("tests")
    shutil.copytree(MODELS, tests / "models")
    (tests / "test_rel.py").write_text(
        f"def test_rel(hw_bench):\n    assert hw_bench('models/mlp.onnx', {FAST}).latency.n\n"
    )
    pytester.runpytest("tests").assert_outcomes(passed=1)  # from the rootdir
    sub = pytester.mkdir("elsewhere")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(sub)
        result = pytester.runpytest(str(tests))
    result.assert_outcomes(passed=1)


def test_missing_relative_model_names_every_place_tried(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_t=f"def test_t(hw_bench):\n    hw_bench('models/nope.onnx', {FAST})\n")
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "hw_bench: no model 'models/nope.onnx'" in out
    assert str(pytester.path / "models" / "nope.onnx") in out
    assert "Traceback" not in out


def test_power_reason_is_said_once_per_board_short_and_in_full_with_v(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(
        ".toml", hwnas='[boards.a]\ntransport = "local"\n\n[boards.b]\ntransport = "local"\n'
    )
    body = "\n".join(
        f"def test_{i}(hw_bench):\n    hw_bench({str(MODELS / 'mlp.onnx')!r}, {FAST})\n"
        for i in range(3)
    )
    pytester.makepyfile(test_t=body)
    result = pytester.runpytest("--hw-target", "a", "--hw-target", "b")
    result.assert_outcomes(passed=6)
    lines = [ln for ln in result.stdout.lines if "power unavailable" in ln]
    assert len(lines) == 2, lines  # one per board, not one per table row or repeated
    assert all(len(ln) < 120 for ln in lines), lines
    assert all("-v" in ln for ln in lines)
    result = pytester.runpytest("--hw-target", "a", "-v")
    (line,) = [ln for ln in result.stdout.lines if "power unavailable" in ln]
    assert "rapl" in line  # the reason of every meter


def test_compare_with_a_baseline_that_does_not_exist_fails_before_the_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_t=f"def test_t(hw_bench):\n    hw_bench({str(MODELS / 'mlp.onnx')!r}, {FAST})\n"
    )
    pytester.runpytest("--hw-save", "v1").assert_outcomes(passed=1)
    result = pytester.runpytest("--hw-compare", "v2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: hwnas: no baseline 'v2' in *.hwnas (have: v1)"])
    assert "passed" not in result.stdout.str()  # nothing was measured first
    result = pytester.runpytest("--hw-compare", "v1")
    result.assert_outcomes(passed=1)


def test_marker_cpus_reach_the_settings(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_t=f"""
import pytest

@pytest.mark.hw(cpus="0")
def test_pinned(hw_bench):
    r = hw_bench({str(MODELS / "mlp.onnx")!r}, {FAST})
    assert r.settings["cpus"] == [0]

def test_call(hw_bench):
    r = hw_bench({str(MODELS / "mlp.onnx")!r}, cpus=[0], {FAST})
    assert r.settings["cpus"] == [0]
"""
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_summary_names_a_busy_board_pinned_cpus_and_the_governor_next_to_drift(
    local_device,
) -> None:
    from hwnas_bench.pytest_plugin.summary import flags_of
    from hwnas_bench.report import Entry

    m = local_device.bench(
        MODELS / "mlp.onnx", min_iterations=10, min_time_s=0.05, warmup_min_s=0.0
    ).to_dict()
    quiet = {"drift": False, "busy": None, "load_avg_start": None, "load_avg_end": None}
    m["environment"].update(quiet)  # this shared machine may well be busy: say it was not
    assert flags_of(Entry("t", "local", "local", m)) == []  # nothing to say about a quiet run
    m["environment"].update(
        drift=True,
        drift_slowdown_pct=12.0,
        load_avg_start=[5.0, 3.0, 1.0],
        cpu_count=2,
        affinity=[1],
        governor_request={"requested": "performance", "applied": True, "previous": "ondemand"},
    )
    assert flags_of(Entry("t", "local", "local", m)) == [
        "drift +12.0% (throttling?)",
        "busy: load average 5.0 on 2 CPUs: other work was running",
        "governor performance requested, applied (was ondemand)",
        "CPUs 1",
    ]


@pytest.mark.parametrize("option", ["--hw-lease-timeout=-1", "--hw-min-time=nan"])
def test_plugin_time_options_refuse_bad_values(pytester: pytest.Pytester, option: str) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*expected a number of seconds >= 0*"])
