"""Workers sharing one study in a real PostgreSQL server (tests/postgres.py): each a real
``hwnas search`` process with its own run directory and its own board (the ``local`` agent,
the SSH fixture's board). Heartbeats every second here (HWNAS_STUDY_HEARTBEAT_S), so a
killed worker's trial is failed about 3 s after the kill."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from hwnas_bench.testing import SSHServer
from search.loop.shared import RECORD_KEY, SURPLUS, sqlalchemy_url

pytestmark = pytest.mark.ssh

HWNAS = [sys.executable, "-m", "hwnas_bench.cli.main"]
PASSWORD = "s3cret-pw"  # trust authentication ignores it; it must never be printed
QUICK = ["--dataset", "digits", "--epochs", "1", "--min-time", "0.05", "--strategy", "random"]


def in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: Any, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """``hwnas ARGS`` run through ``main`` in this process, with ``env``'s variables: for
    a verb that needs no process of its own (one that is refused, a report)."""
    from hwnas_bench.cli.main import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = main(list(args))
    said = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, said.out, said.err)


def test_a_storage_url_that_is_not_postgresql_is_refused_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    bad = f"mysql://ana:{PASSWORD}@db.lab/hwnas"
    for verb in (
        ["search", *QUICK, "--storage", bad, "--out", str(tmp_path / "run")],
        ["report", "--storage", bad, "--study", "s", "--out", str(tmp_path / "r")],
    ):
        done = in_process(monkeypatch, capsys, {}, *verb)
        assert done.returncode == 2, done.stderr
        assert "--storage: must be a postgresql://" in done.stderr
        assert "mysql://ana:***@db.lab/hwnas" in done.stderr
        assert PASSWORD not in done.stdout + done.stderr
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


def with_password(url: str) -> str:
    return url.replace("://farm@", f"://farm:{PASSWORD}@")


@pytest.fixture
def env(sshd: SSHServer, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "hwnas.toml"
    config.write_text(sshd.board_toml("ssh-board"))
    return {
        **os.environ,
        "HWNAS_CONFIG": str(config),
        "HWNAS_STUDY_HEARTBEAT_S": "1",
    }


def worker(
    env: dict[str, str], url: str, study: str, out: Path, target: str, *extra: str
) -> subprocess.Popen[str]:
    args = ["search", *QUICK, "--storage", url, "--study", study, "--out", str(out)]
    return subprocess.Popen(
        [*HWNAS, *args, "--target", target, "-q", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def load(url: str, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=sqlalchemy_url(url))


def measured_numbers(out: Path) -> list[int]:
    path = out / "measurements.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["trial"] for line in path.read_text().splitlines()]


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count against ``trials``: told, not surplus, not interrupted, not a
    repeat of a candidate the same worker measured (those are not measured again)."""
    return [
        t
        for t in study.get_trials()
        if (t.state == TrialState.PRUNED and t.user_attrs.get("outcome") != "duplicate")
        or t.state == TrialState.COMPLETE
        or (t.state == TrialState.FAIL and t.user_attrs.get("outcome") == "failed")
    ]


def test_two_workers_share_a_study_and_a_different_one_is_refused(
    postgres_url: str,
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    url = with_password(postgres_url)
    a = worker(env, url, "shared", tmp_path / "a", "local", "--trials", "8")
    b = worker(env, url, "shared", tmp_path / "b", "ssh-board", "--trials", "8")
    (rc_a, log_a), (rc_b, log_b) = finish(a), finish(b)
    assert (rc_a, rc_b) == (0, 0), log_a + log_b
    study = load(postgres_url, "shared")
    trials = study.get_trials()
    done = counted(study)
    assert len(done) == 8, [(t.number, t.state, t.user_attrs.get("outcome")) for t in trials]
    # nothing else in the study but repeats and surplus asks of a race (none of them run)
    rest = [t for t in trials if t not in done]
    assert all(t.user_attrs.get("outcome") in (SURPLUS, "duplicate") for t in rest), rest
    workers = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in done}
    assert workers <= {str(a.pid), str(b.pid)}
    # each measured trial in exactly one run directory: the worker's that ran it
    in_a, in_b = measured_numbers(tmp_path / "a"), measured_numbers(tmp_path / "b")
    assert not set(in_a) & set(in_b)
    assert len(in_a + in_b) == len(set(in_a + in_b))
    measured = {t.number: t for t in done if t.user_attrs.get("outcome") == "measured"}
    assert sorted(in_a + in_b) == sorted(measured)
    for number in in_a:
        assert measured[number].user_attrs["worker"].endswith(f":{a.pid}")
        assert measured[number].user_attrs["measurement"]["target"] == "local"
    for number in in_b:
        assert measured[number].user_attrs["worker"].endswith(f":{b.pid}")
        assert measured[number].user_attrs["measurement"]["target"] == "ssh-board"
        assert measured[number].user_attrs["board"] == "ssh-board"
    record = study.user_attrs[RECORD_KEY]
    assert record["bench"]["threads"] == 1
    assert record["board"]["cpu_model"]

    # different bench settings: refused before any trial, naming the difference
    args = ["search", *QUICK, "--storage", url, "--study", "shared", "--out", str(tmp_path / "c")]
    c = in_process(monkeypatch, capsys, env, *args, "--target", "local", "--threads", "2")
    rc_c, log_c = c.returncode, c.stdout + c.stderr
    assert rc_c == 2, log_c
    assert "bench.threads: the study has 1, this worker 2" in log_c
    assert len(load(postgres_url, "shared").get_trials()) == len(trials)

    # the report, from the study alone
    report = in_process(
        monkeypatch,
        capsys,
        env,
        "report",
        "--storage",
        url,
        "--study",
        "shared",
        "--out",
        str(tmp_path / "r"),
    )
    assert report.returncode == 0, report.stderr
    for name in ("pareto.png", "pareto.json", "summary.md"):
        assert (tmp_path / "r" / name).stat().st_size > 0
    pareto = json.loads((tmp_path / "r" / "pareto.json").read_text())
    assert pareto["front"]
    assert {row["trial"] for row in pareto["front"]} <= set(measured)
    for row in pareto["front"]:
        attrs: dict[str, Any] = measured[row["trial"]].user_attrs
        assert row["latency_ms"] == attrs["latency_ms"]
        assert row["measurement"]["target"] == attrs["measurement"]["target"]
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert f"after {sum(1 for t in done if t.user_attrs.get('outcome') != 'duplicate')}" in summary
    for text in (log_a, log_b, log_c, report.stdout, report.stderr):
        assert PASSWORD not in text
    assert "farm:***@" in report.stdout


def stopped_in_a_running_trial(url: str, study: str, pid: int, timeout: float = 120) -> int:
    """Freeze worker ``pid`` (SIGSTOP) while one of its trials is RUNNING; that trial's
    number. A trial seen running may finish before a signal lands: it is looked at again
    once the worker is frozen, and the worker let go to try again if it finished."""
    deadline = time.monotonic() + timeout
    while True:
        number = running_trial_of(url, study, pid, timeout=max(1.0, deadline - time.monotonic()))
        os.kill(pid, signal.SIGSTOP)
        if load(url, study).trials[number].state == TrialState.RUNNING:
            return number
        os.kill(pid, signal.SIGCONT)
        if time.monotonic() > deadline:
            raise AssertionError(f"pid {pid} was never frozen inside a running trial")


def running_trial_of(url: str, study: str, pid: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            trials = load(url, study).get_trials(states=(TrialState.RUNNING,))
        except KeyError:  # not created yet
            trials = []
        for t in trials:
            if t.user_attrs.get("worker", "").endswith(f":{pid}"):
                return t.number
        time.sleep(0.1)
    raise AssertionError(f"no running trial of pid {pid} within {timeout} s")


@pytest.mark.slow  # ~26 s: a real SIGKILL and a resume; the two-worker test runs by default
def test_a_killed_worker_leaves_a_failed_trial_and_the_other_finishes_then_it_resumes(
    postgres_url: str, env: dict[str, str], tmp_path: Path
) -> None:
    b = worker(env, postgres_url, "kill", tmp_path / "b", "ssh-board", "--trials", "5")
    a = worker(env, postgres_url, "kill", tmp_path / "a", "local", "--trials", "5")
    killed = stopped_in_a_running_trial(postgres_url, "kill", a.pid)
    os.kill(a.pid, signal.SIGKILL)
    a.communicate(timeout=30)
    rc_b, log_b = finish(b)
    assert rc_b == 0, log_b
    study = load(postgres_url, "kill")
    trial = study.trials[killed]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["outcome"] == "interrupted"
    assert "stopped beating" in trial.user_attrs["reason"]
    assert f":{a.pid}" in trial.user_attrs["reason"]
    assert len(counted(study)) == 5, [
        (t.number, t.state, t.user_attrs.get("outcome"), t.user_attrs.get("worker"))
        for t in study.trials
    ]
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    # its candidate (the genes it had drawn when killed) was queued again and run, by b
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == killed]
    assert len(retry) == 1
    again_by = retry[0]
    assert again_by.user_attrs["worker"].endswith(f":{b.pid}")
    assert trial.params.items() <= again_by.params.items()
    # what it ended as is what that candidate is for b: measured (COMPLETE), pruned or
    # invalid (PRUNED, counted), or, where b had measured that very candidate before, a
    # repeat (PRUNED, with b's own figures, not counted: b ran one trial more for it)
    outcome = again_by.user_attrs["outcome"]
    if outcome == "duplicate":
        earlier = [
            t
            for t in study.trials
            if t.number < again_by.number
            and t.user_attrs.get("outcome") == "measured"
            and t.user_attrs.get("hash") == again_by.user_attrs["hash"]
            and t.user_attrs["worker"].endswith(f":{b.pid}")
        ]
        assert earlier, f"trial {again_by.number} is a repeat of nothing b measured"
        assert again_by.user_attrs["latency_ms"] == earlier[0].user_attrs["latency_ms"]
        assert again_by.state == TrialState.PRUNED
    else:
        assert again_by in counted(study), (again_by.state, outcome)

    # the killed worker's run directory resumes against PostgreSQL: one trial more
    again = worker(env, postgres_url, "kill", tmp_path / "a", "local", "--trials", "6", "--resume")
    rc, log = finish(again)
    assert rc == 0, log
    assert len(counted(load(postgres_url, "kill"))) == 6


def test_the_python_api_takes_storage_and_study_and_writes_measurements_as_attrs(
    postgres_url: str, tmp_path: Path, small_digits: tuple[Any, Any]
) -> None:
    from search import Searcher

    from .test_search import SMALL, digits_space

    kw: dict[str, Any] = {"strategy": "random", "epochs": 1, "batch_size": 64, "bench": SMALL}
    searcher = Searcher(
        digits_space(), trials=3, out=tmp_path / "a", storage=postgres_url, study="api", **kw
    )
    searcher.search(*small_digits)
    assert not (tmp_path / "a" / "study.db").exists()  # the study is in PostgreSQL
    study = load(postgres_url, "api")
    assert study.metric_names == ["accuracy", "latency_ms"]
    measured = [t for t in study.trials if t.user_attrs.get("outcome") == "measured"]
    assert measured
    for t in measured:
        m = t.user_attrs["measurement"]
        assert m["target"] == "local"
        assert m["latency"]["median_ms"] > 0
        assert m["samples_ms"] == []  # the samples stay in the worker's measurements.jsonl
        assert t.user_attrs["worker"] == f"{socket.gethostname()}:{os.getpid()}"
    # a resume with more trials continues the study (its total), on the same run directory
    again = Searcher(
        digits_space(),
        trials=5,
        out=tmp_path / "a",
        storage=postgres_url,
        study="api",
        resume=True,
        **kw,
    )
    again.search(*small_digits)
    assert len(counted(load(postgres_url, "api"))) == 5
