"""The hooks: options, target parametrization, collection of results, report, comparison."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from hw_targets import HwTargetsError

from ..config import Config, load_config
from ..errors import ConfigError, UnknownTargetError
from ..report import (
    Entry,
    ReportError,
    Storage,
    build_report,
    entries_by_test,
    read_report,
    write_report,
)
from . import fixtures, summary
from .compare import CompareExpressionError, measurement_setup_differences, parse_checks
from .options import add_options
from .state import STATE, HwState, get_state

hw_target = fixtures.hw_target
hw_bench = fixtures.hw_bench


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "hw(targets=None, **settings): run on these boards (names or tag:X) with these "
        "BenchSettings defaults for hw_bench",
    )
    requested = config.getoption("hw_target")
    hw_options = bool(requested or config.getoption("hw_config"))
    config_error: str | None = None
    try:
        hw_config = load_config(config.getoption("hw_config"))
        for what in requested:
            check_target(hw_config, what, option="--hw-target ")
        expression = config.getoption("hw_compare_fail")
        checks = parse_checks(expression) if expression else []
    except (ConfigError, CompareExpressionError, HwTargetsError) as exc:
        if hw_options or isinstance(exc, CompareExpressionError):
            raise pytest.UsageError(f"hwnas: {exc}") from None
        # A broken hwnas.toml must not break test suites that measure nothing: the error
        # is raised only if a collected test uses the hw fixtures.
        config_error, hw_config, checks = f"hwnas: {exc}", Config(), []
    compare = config.getoption("hw_compare")
    if compare is None and checks:
        compare = ""  # --hw-compare-fail implies comparing with the latest baseline
    storage = Path(config.rootpath, config.getoption("hw_storage"))
    if compare and not _is_worker(config):
        try:  # a misspelt baseline must stop the run before it measures, not after
            Storage(storage).find(compare)
        except ReportError as exc:
            raise pytest.UsageError(f"hwnas: {exc}") from None
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    config.stash[STATE] = HwState(
        config=hw_config,
        targets=requested or ["local"],
        explicit_targets=bool(requested),
        storage=storage,
        checks=checks,
        compare=compare,
        worker=worker,
        config_error=config_error,
    )
    if not _is_worker(config):
        config.pluginmanager.register(ResultCollector(config.stash[STATE]), "hwnas-results")


def check_target(config: Config, what: str, option: str = "") -> None:
    """Raise UnknownTargetError when ``what`` (a name or ``tag:X``) names no board."""
    if what.startswith("tag:"):
        if not config.with_tag(what[4:]):
            where = f" in {config.path}" if config.path else " (no config file found)"
            raise UnknownTargetError(f"{option}{what}: no board has the tag '{what[4:]}'{where}")
    else:
        config.target(what)


def pytest_unconfigure(config: pytest.Config) -> None:
    if STATE in config.stash:
        get_state(config).close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hw_target" not in metafunc.fixturenames:
        return
    state = get_state(metafunc.config)
    marker = metafunc.definition.get_closest_marker("hw")
    wanted = marker.kwargs.get("targets") if marker else None
    if isinstance(wanted, str):
        wanted = [wanted]
    if wanted is None:
        targets = state.targets
    elif state.explicit_targets:
        targets = [t for t in state.targets if t in wanted]
    else:
        targets = list(wanted)
    if not targets:
        skip = pytest.mark.skip(reason=f"hwnas: test is for {wanted}, run with {state.targets}")
        metafunc.parametrize("hw_target", [pytest.param("none", marks=skip)], indirect=True)
        return
    params = []
    for target in targets:
        marks = []
        if not state.explicit_targets and not state.config_error:
            try:  # the marker names a board this machine's config lacks: skip, saying so
                check_target(state.config, target)
            except UnknownTargetError as exc:
                marks.append(pytest.mark.skip(reason=f"hwnas: {exc}"))
        params.append(pytest.param(target, marks=marks, id=target))
    metafunc.parametrize("hw_target", params, indirect=True)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = get_state(config)
    if state.config_error and any("hw_target" in getattr(i, "fixturenames", ()) for i in items):
        raise pytest.UsageError(state.config_error)


class ResultCollector:
    """Registered per session: gathers the measurements that tests attach to their reports.

    Under pytest-xdist the reports of every worker arrive here, on the controller, with
    their ``user_properties``; without xdist they come from this process. Either way the
    controller sees every measurement once.
    """

    def __init__(self, state: HwState) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for key, value in report.user_properties:
            if key == fixtures.RECORD_KEY and isinstance(value, dict):
                self.state.entries.append(Entry(**value))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if _is_worker(config) or STATE not in config.stash:
        return
    state = get_state(config)
    if not state.entries:
        if state.compare is not None:
            state.notes.append("nothing was measured, so nothing was compared")
        return
    storage = Storage(state.storage)
    try:
        if state.compare is not None:
            _compare(state, storage)
        _write(state, session, storage)
    except ReportError as exc:
        state.notes.append(f"ERROR: {exc}")
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
        return
    if any(v.failed for _, v in state.verdicts) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _write(state: HwState, session: pytest.Session, storage: Storage) -> None:
    config = session.config
    report = build_report(state.entries)
    if config.getoption("hw_json"):
        try:
            path = write_report(Path(config.getoption("hw_json")), report)
        except OSError as exc:
            raise ReportError(f"cannot write --hw-json: {exc}") from exc
        state.notes.append(f"JSON report written to {path}")
    if not (config.getoption("hw_save") or config.getoption("hw_autosave")):
        return
    if session.shouldstop or session.exitstatus == pytest.ExitCode.INTERRUPTED:
        # a partial run must not become the baseline that the next run is held to
        state.notes.append("the run was interrupted: no baseline saved")
        return
    try:
        if config.getoption("hw_save"):
            state.notes.append(
                f"baseline saved as {storage.save(report, config.getoption('hw_save'))}"
            )
        if config.getoption("hw_autosave"):
            state.notes.append(f"baseline saved as {storage.save(report)}")
    except OSError as exc:
        raise ReportError(f"cannot save the baseline in {storage.root}: {exc}") from exc


def _compare(state: HwState, storage: Storage) -> None:
    if state.compare == "" and not storage.all():
        # the first run of a project: nothing to hold it to yet; saving still happens
        state.notes.append(f"no baseline in {storage.root} yet: nothing compared")
        return
    baseline_path = storage.find(state.compare or None)
    state.notes.append(f"compared with baseline {baseline_path}")
    baseline = entries_by_test(read_report(baseline_path))
    checks = state.checks or parse_checks("p95:0%")  # without a rule, show the change
    for entry in state.entries:
        old = baseline.get(entry.test)
        if old is None:
            state.notes.append(f"{entry.test}: new, not in the baseline")
            continue
        diffs = measurement_setup_differences(old.measurement, entry.measurement)
        if diffs:
            state.setup_warnings.append(
                f"{entry.test}: baseline measured on a different setup ({'; '.join(diffs)})"
            )
        for check in checks:
            verdict = check.evaluate(old.measurement, entry.measurement)
            if not state.checks:  # informative only
                verdict = dataclasses.replace(verdict, failed=False)
            state.verdicts.append((entry, verdict))
    missing = sorted(set(baseline) - {e.test for e in state.entries})
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        state.notes.append(f"not measured in this run, though in the baseline: {missing[0]}{more}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _is_worker(config) or STATE not in config.stash:
        return
    summary.write(terminalreporter, get_state(config), verbose=config.option.verbose > 0)
