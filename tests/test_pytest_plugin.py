"""The pytest plugin, through pytester: options, fixtures, marker, summary, JSON, baselines."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from hwnas_bench.testing import SSHServer

MODELS = Path(__file__).resolve().parent.parent / "examples" / "models"
FAST = "min_iterations=10, min_time_s=0.05, warmup_min_s=0.0"

BASIC = f"""
import pytest

MODEL = {str(MODELS / "mlp.onnx")!r}

def test_latency(hw_bench):
    r = hw_bench(MODEL, {FAST})
    assert r.latency.p95_ms < 50

@pytest.mark.hw(threads=1, min_iterations=7, min_time_s=0.05, warmup_min_s=0.0)
def test_marker_settings(hw_bench, hw_target):
    r = hw_bench(MODEL)
    assert r.settings["threads"] == 1
    assert r.latency.n >= 7
    assert hw_target.name == hw_target.requested == "local"
    assert hw_target.facts["onnxruntime"]
"""

TWO_LOCAL_BOARDS = """
[boards.a]
transport = "local"
tags = ["cpu"]

[boards.b]
transport = "local"
tags = ["cpu"]
"""


def test_default_target_summary_and_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_basic=BASIC)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*= hwnas: 2 measurement(s) =*",
            "local: *onnxruntime *",
            "test*median ms*p95 ms*p99 ms*throughput /s*energy mJ*power source",
            "test_basic.py::test_latency[[]local[]]*none",
            "test_basic.py::test_marker_settings[[]local[]]*",
            "*power unavailable: no power sensor found*",
        ]
    )


def test_json_report_has_board_facts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_basic=BASIC)
    result = pytester.runpytest("--hw-json", "out/report.json", "--hw-min-time", "0.1")
    result.assert_outcomes(passed=2)
    report = json.loads((pytester.path / "out/report.json").read_text())
    assert report["schema"] == "hwnas.report/1"
    assert report["boards"]["local"]["onnxruntime"]
    tests = {r["test"]: r for r in report["results"]}
    assert set(tests) == {
        "test_basic.py::test_latency[local]",
        "test_basic.py::test_marker_settings[local]",
    }
    latency = tests["test_basic.py::test_latency[local]"]["measurement"]
    assert latency["schema"] == "hwnas.measurement/1"
    assert latency["settings"]["min_time_s"] == 0.05  # the call wins over --hw-min-time
    marker = tests["test_basic.py::test_marker_settings[local]"]["measurement"]
    assert marker["settings"]["min_time_s"] == 0.05  # the marker wins over --hw-min-time


def test_hw_min_time_sets_the_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_t=f"""
def test_t(hw_bench):
    r = hw_bench({str(MODELS / "mlp.onnx")!r}, min_iterations=5, warmup_min_s=0.0)
    assert r.settings["min_time_s"] == 0.2
    assert r.window_s >= 0.2
"""
    )
    pytester.runpytest("--hw-min-time", "0.2").assert_outcomes(passed=1)


def test_several_targets_and_tags(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", hwnas=TWO_LOCAL_BOARDS)
    pytester.makepyfile(
        test_t=f"""
import pytest

def test_each(hw_bench, hw_target):
    hw_bench({str(MODELS / "mlp.onnx")!r}, {FAST})

@pytest.mark.hw(targets=["b"])
def test_only_b(hw_target):
    assert hw_target.name == "b"
"""
    )
    result = pytester.runpytest("-v", "-rs", "--hw-target", "a", "--hw-target", "tag:cpu")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*test_each[[]a[]] PASSED*",
            "*test_each[[]tag:cpu[]] PASSED*",
            "SKIPPED*hwnas: test is for [[]'b'[]], run with [[]'a', 'tag:cpu'[]]",
        ]
    )
    result = pytester.runpytest("-v", "--hw-config", "hwnas.toml")  # no --hw-target: markers pick
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_each[[]local[]] PASSED*", "*test_only_b[[]b[]] PASSED*"])


def test_the_boards_bench_table_fills_what_the_test_leaves_unset(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(
        ".toml",
        hwnas='[boards.two]\ntransport = "local"\n'
        'bench = {threads = 2, graph_optimization = "basic"}\n',
    )
    pytester.makepyfile(
        test_t=f"""
def test_table(hw_bench, hw_target):
    assert hw_target.bench == {{"threads": 2, "graph_optimization": "basic"}}
    r = hw_bench({str(MODELS / "mlp.onnx")!r}, {FAST})
    assert (r.settings["threads"], r.settings["graph_optimization"]) == (2, "basic")
    r = hw_bench({str(MODELS / "mlp.onnx")!r}, threads=1, {FAST})  # the call wins
    assert (r.settings["threads"], r.settings["graph_optimization"]) == (1, "basic")
"""
    )
    result = pytester.runpytest("--hw-config", "hwnas.toml", "--hw-target", "two")
    result.assert_outcomes(passed=1)


def test_model_as_bytes_and_two_calls(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_t=f"""
from pathlib import Path

def test_two(hw_bench):
    data = Path({str(MODELS / "mlp.onnx")!r}).read_bytes()
    a = hw_bench(data, {FAST})
    b = hw_bench(data, dims={{"batch": 4}}, name="batch4", {FAST})
    assert a.inputs[0]["shape"] == [1, 64] and b.inputs[0]["shape"] == [4, 64]
"""
    )
    result = pytester.runpytest("--hw-json", "r.json")
    result.assert_outcomes(passed=1)
    tests = [r["test"] for r in json.loads((pytester.path / "r.json").read_text())["results"]]
    assert tests == ["test_t.py::test_two[local]", "test_t.py::test_two[local]::batch4"]


@pytest.mark.slow  # 12 s; the README's example, run by default in test_new_user.py, measures
# a torch module through hw_bench too
def test_torch_module_is_exported_and_measured(pytester: pytest.Pytester) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    pytester.makepyfile(
        test_t=f"""
import torch

def test_module(hw_bench):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 14 * 14, 10))
    r = hw_bench(net, torch.randn(1, 3, 16, 16), {FAST})
    assert r.inputs[0]["shape"] == [1, 3, 16, 16]
    assert r.latency.n >= 10
"""
    )
    # A subprocess: pytester's in-process runs unload the modules each run imported, and
    # torch cannot be imported twice into one interpreter.
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def _baseline(pytester: pytest.Pytester) -> Path:
    pytester.makepyfile(test_basic=BASIC)
    pytester.runpytest("--hw-save", "base").assert_outcomes(passed=2)
    path = pytester.path / ".hwnas" / "base.json"
    assert path.is_file()
    return path


def test_compare_fail_passes_within_the_threshold(pytester: pytest.Pytester) -> None:
    _baseline(pytester)
    result = pytester.runpytest("--hw-compare", "base", "--hw-compare-fail", "p95:100000%")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*hwnas: comparison with baseline*",
            "test_basic.py::test_latency[[]local[]] on local: p95 ok: * ms vs baseline * ms (*), "
            "threshold +100000%",
            "hwnas: compared with baseline *base.json",
        ]
    )


def test_compare_fail_fails_the_session_naming_everything(pytester: pytest.Pytester) -> None:
    path = _baseline(pytester)
    report = json.loads(path.read_text())
    for entry in report["results"]:
        entry["measurement"]["latency"]["p95_ms"] = 1e-6  # a baseline no run can match
    path.write_text(json.dumps(report))
    result = pytester.runpytest("--hw-compare-fail", "p95:10%")  # implies the latest baseline
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "test_basic.py::test_latency[[]local[]] on local: p95 regressed: * ms vs baseline "
            "1e-06 ms (*), threshold +10%",
            "hwnas: 2 regression(s) beyond --hw-compare-fail",
        ]
    )
    result.assert_outcomes(passed=2)  # the tests themselves passed; the session fails


def test_energy_in_the_baseline_but_not_measured_now_fails_the_session(
    pytester: pytest.Pytester,
) -> None:
    path = _baseline(pytester)  # measured on a board without a meter: energy None
    report = json.loads(path.read_text())
    for entry in report["results"]:
        entry["measurement"]["power"].update(energy_mj=3.4, mean_w=5.0, reason=None)
    path.write_text(json.dumps(report))
    result = pytester.runpytest("--hw-compare", "base", "--hw-compare-fail", "energy:5%")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "test_basic.py::test_latency[[]local[]] on local: energy: baseline 3.4 mJ, "
            "this run not measured: no power sensor found*",
            "hwnas: 2 figure(s) in the baseline not measured in this run "
            "(--hw-compare-fail fails them)",
        ]
    )
    result.stdout.no_fnmatch_line("*regression(s) beyond*")
    result.assert_outcomes(passed=2)


def test_compare_warns_about_a_different_setup(pytester: pytest.Pytester) -> None:
    path = _baseline(pytester)
    report = json.loads(path.read_text())
    for entry in report["results"]:
        entry["measurement"]["board"]["onnxruntime"] = "1.0.0"
    path.write_text(json.dumps(report))
    result = pytester.runpytest("--hw-compare", "base")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["hwnas: warning: *baseline measured on a different setup (onnxruntime: '1.0.0' -> *"]
    )


def test_autosave_numbers_baselines_and_compare_finds_them(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_basic=BASIC)
    pytester.runpytest("--hw-autosave").assert_outcomes(passed=2)
    pytester.runpytest("--hw-autosave", "--hw-compare").assert_outcomes(passed=2)
    saved = sorted(p.name[:4] for p in (pytester.path / ".hwnas").glob("*.json"))
    assert saved == ["0001", "0002"]
    result = pytester.runpytest("--hw-compare", "1")
    result.stdout.fnmatch_lines(["hwnas: compared with baseline *0001_*.json"])
    result = pytester.runpytest("--hw-compare", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # at once, before any test ran
    result.stderr.fnmatch_lines(["ERROR: hwnas: no baseline 'nope' in *"])


def test_config_mistakes_are_one_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".toml", hwnas='[boards.pi5]\ntransport = "ssh"\nhost = "h"\nprofile = "pi-5"\n'
    )
    pytester.makepyfile(test_t="def test_t(hw_target): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: hwnas: *hwnas.toml: board 'pi5': key 'profile': unknown hardware profile 'pi-5'*"]
    )
    pytester.makefile(".toml", hwnas='[boards.pi5]\ntransport = "ssh"\nhots = "h"\n')
    pytester.makepyfile(test_plain="def test_plain(): pass")
    pytester.runpytest("test_plain.py").assert_outcomes(passed=1)  # measures nothing: unaffected
    result = pytester.runpytest()
    result.stderr.fnmatch_lines(
        ["ERROR: hwnas: *hwnas.toml: board 'pi5': key 'hots': unknown key*"]
    )
    pytester.makefile(".toml", hwnas=TWO_LOCAL_BOARDS)
    result = pytester.runpytest("--hw-target", "c")
    result.stderr.fnmatch_lines(["ERROR: hwnas: no board named 'c' in *hwnas.toml; known: *"])
    result = pytester.runpytest("--hw-compare-fail", "p95=10")
    result.stderr.fnmatch_lines(["ERROR: hwnas: cannot parse 'p95=10'*"])


def test_unreachable_board_fails_or_skips(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".toml",
        hwnas='[boards.gone]\ntransport = "ssh"\nhost = "127.0.0.1"\nport = 1\ntimeout = 3\n',
    )
    pytester.makepyfile(test_t="def test_t(hw_target): pass")
    result = pytester.runpytest("--hw-target", "gone")
    result.assert_outcomes(errors=1)  # the fixture could not set the board up
    result.stdout.fnmatch_lines(
        ["ERROR test_t.py::test_t[[]gone[]] - Failed: hwnas: gone: connect: 127.0.0.1:1: *"]
    )
    assert "direct cause" not in result.stdout.str()
    result = pytester.runpytest("--hw-target", "gone", "--hw-skip-unreachable", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*hwnas: gone: connect: 127.0.0.1:1*"])


@pytest.mark.slow  # ~10 s: pytest -n 4 in a subprocess
def test_xdist_workers_never_share_a_board(
    pytester: pytest.Pytester, sshd: SSHServer, private_lock_dir: Path
) -> None:
    """Two workers, two boards (the local agent and the SSH fixture's board), many tests:
    the lease log shows that no board was ever held by two workers at once."""
    pytest.importorskip("xdist")
    local_board = TWO_LOCAL_BOARDS.split("[boards.b]")[0]
    pytester.makefile(".toml", hwnas=local_board + sshd.board_toml("ssh-board"))
    body = "\n".join(
        f"def test_{i}(hw_bench):\n    hw_bench({str(MODELS / 'convnet.onnx')!r}, min_time_s=0.3, "
        "min_iterations=5, warmup_min_s=0.0)\n"
        for i in range(6)
    )
    pytester.makepyfile(test_many=body)
    result = pytester.runpytest_subprocess(
        "-n", "2", "--hw-target", "a", "--hw-target", "ssh-board", "--hw-json", "report.json"
    )
    result.assert_outcomes(passed=12)
    records = [
        json.loads(line) for line in (private_lock_dir / "leases.jsonl").read_text().splitlines()
    ]
    assert len(records) == 12
    for board in ("a", "ssh-board"):
        leases = sorted((r for r in records if r["board"] == board), key=lambda r: r["start"])
        assert len(leases) == 6
        for before, after in itertools.pairwise(leases):
            assert before["end"] <= after["start"], f"{board} held twice at once: {before} {after}"
        assert len({r["pid"] for r in leases}) == 2  # both workers used it, one at a time
    report = json.loads((pytester.path / "report.json").read_text())
    assert len(report["results"]) == 12  # the controller saw every worker's measurements
    assert set(report["boards"]) == {"a", "ssh-board"}


@pytest.mark.slow  # 1.5 minutes with every CPU kept busy: CI's slow step runs it
def test_board_farm_example_runs_as_documented(pytester: pytest.Pytester) -> None:
    """examples/board_farm is what the README tells users to copy: it must run on local,
    and its budgets must hold on a busy machine (issue 6: `-n 8` on a 2-core runner), so
    it runs here while every CPU is kept busy by another process."""
    import os
    import subprocess
    import sys

    example = MODELS.parent / "board_farm"
    pytester.makefile(".toml", hwnas=(example / "hwnas.toml").read_text())
    (pytester.path / "models").symlink_to(MODELS)
    (pytester.path / "farm").mkdir()
    (pytester.path / "farm/test_models.py").write_text((example / "test_models.py").read_text())
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        result = pytester.runpytest_subprocess("farm", "-p", "no:cacheprovider")  # torch
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    result.assert_outcomes(passed=4)


def test_busy_board_times_out_naming_the_holder(
    pytester: pytest.Pytester, private_lock_dir: Path
) -> None:
    from hwnas_bench.locks import BoardLock

    pytester.makefile(".toml", hwnas=TWO_LOCAL_BOARDS)
    pytester.makepyfile(test_t="def test_t(hw_target): pass")
    lock = BoardLock(private_lock_dir, "a")
    assert lock.try_acquire("a long benchmark elsewhere")
    try:
        result = pytester.runpytest("--hw-target", "a", "--hw-lease-timeout", "0.3")
    finally:
        lock.release()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*hwnas: a: no board free after waiting 0 s: "
            "a is held by pid * (a long benchmark elsewhere)*"
        ]
    )


def test_storage_directory_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_basic=BASIC)
    pytester.runpytest("--hw-storage", "perf/baselines", "--hw-save", "v1").assert_outcomes(
        passed=2
    )
    assert (pytester.path / "perf/baselines/v1.json").is_file()
    result = pytester.runpytest("--hw-storage", "perf/baselines", "--hw-compare", "v1")
    result.stdout.fnmatch_lines(["hwnas: compared with baseline *perf/baselines/v1.json"])
