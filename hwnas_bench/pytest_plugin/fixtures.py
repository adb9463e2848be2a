"""``hw_target``: a leased board. ``hw_bench``: measure a model on it, recorded for the report."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest

from device_agent.protocol import BenchSettings

from ..config import parse_cpu_list
from ..device import Device
from ..errors import (
    ConnectError,
    ConnectionLostError,
    DeviceTimeoutError,
    HwnasError,
    UnknownTargetError,
)
from ..export import is_torch_module, torch_to_onnx
from ..facts import BoardFacts
from ..farm import BoardUnhealthyError, NoHealthyBoardError
from ..measurement import Measurement
from ..report import Entry
from ..targets import BenchRule, TargetSpec, table_entries
from .state import get_state

#: Errors that mean "the board cannot be reached" (what --hw-skip-unreachable skips): it is
#: down, unhealthy, every board of its tag is, or the name/tag names no board at all.
UNREACHABLE = (
    ConnectError,
    ConnectionLostError,
    DeviceTimeoutError,
    BoardUnhealthyError,
    NoHealthyBoardError,
    UnknownTargetError,
)
RECORD_KEY = "hwnas"
SETTING_NAMES = {f.name for f in fields(BenchSettings)}


@dataclass(frozen=True)
class HwTarget:
    """The board a test runs on, leased exclusively for the test's duration."""

    requested: str  #: what the test was parametrized with: a name or ``tag:X``
    name: str  #: the board that was leased
    facts: BoardFacts  #: its ``hello`` facts
    device: Device
    profile: str | None
    #: the leased board's ``[bench]`` table (its provider, threads, ...; see hwnas.toml)
    bench: dict[str, Any] = field(default_factory=dict)
    spec: TargetSpec | None = None  #: the leased board's spec (its table's precedence rule)


def _marker_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("hw")
    if marker is None:
        return {}
    settings = {k: v for k, v in marker.kwargs.items() if k != "targets"}
    unknown = set(settings) - SETTING_NAMES
    if unknown:
        raise pytest.UsageError(
            f"@pytest.mark.hw: unknown setting(s) {sorted(unknown)}; known: {sorted(SETTING_NAMES)}"
        )
    return settings


def _cpus(value: Any) -> Any:
    """``cpus="4-7"`` or ``"0,2-3"`` as on the command line; a list passes as it is."""
    if isinstance(value, str):
        try:
            return parse_cpu_list(value)
        except ValueError as exc:
            raise pytest.UsageError(f"hwnas: cpus={value!r}: {exc}") from None
    return value


def _announce(config: pytest.Config, line: str) -> None:
    """A line on the terminal now, past pytest's output capture (a wait can be long).

    An xdist worker has no terminal of its own: there the line becomes a warning, which
    the controller prints in its warnings summary."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or hasattr(config, "workerinput"):
        warnings.warn(pytest.PytestWarning(line), stacklevel=2)
        return
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line, yellow=True)
    else:
        reporter.write_line(line, yellow=True)


def _wait_notice(config: pytest.Config) -> Callable[[str], None]:
    """Farm.lease's ``on_wait``: say once per distinct message what the lease waits for."""
    said: set[str] = set()

    def on_wait(message: str) -> None:
        if message not in said:
            said.add(message)
            _announce(config, f"hwnas: {message}")

    return on_wait


@pytest.fixture
def hw_target(request: pytest.FixtureRequest) -> Iterator[HwTarget]:
    state = get_state(request.config)
    what = getattr(request, "param", None) or state.targets[0]
    error: HwnasError | None = None
    try:
        lease = state.farm().lease(
            what,
            timeout=request.config.getoption("hw_lease_timeout"),
            purpose=f"pytest {state.worker}: {request.node.nodeid}",
            on_wait=_wait_notice(request.config),
        )
    except HwnasError as exc:  # unreachable, unhealthy, busy, misconfigured
        error = exc
    if error is not None:  # outside the except block: one line, no exception chain
        message = f"hwnas: {error}".splitlines()[0]
        if isinstance(error, UNREACHABLE) and request.config.getoption("hw_skip_unreachable"):
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    try:
        yield HwTarget(
            what,
            lease.name,
            lease.facts,
            lease.device,
            lease.spec.profile,
            lease.spec.bench_copy(),
            lease.spec,
        )
    finally:
        lease.release()


Bench = Callable[..., Measurement]


def resolve_model(model: Any, request: pytest.FixtureRequest) -> Any:
    """A relative model path, tried against the test file's folder, then the rootdir, then
    the working directory; the first that exists wins. Anything else passes as it is."""
    if not isinstance(model, (str, os.PathLike)) or Path(model).is_absolute():
        return model
    tried: list[Path] = []
    for base in (request.path.parent, request.config.rootpath, Path.cwd()):
        candidate = base / model
        if candidate not in tried:
            tried.append(candidate)
        if candidate.is_file():
            return candidate
    where = ", ".join(str(t) for t in tried)
    pytest.fail(f"hw_bench: no model '{model}': tried {where}", pytrace=False)


@pytest.fixture
def hw_bench(request: pytest.FixtureRequest, hw_target: HwTarget) -> Bench:
    """``hw_bench(model, example_input=None, *, inputs=None, name=None, **settings)``.

    ``model``: a path to an ONNX file, ONNX bytes, or a torch module (then
    ``example_input`` is required and the module is exported with the dynamo exporter).
    Settings come from the defaults, then the leased board's ``[bench]`` table, then
    ``--hw-min-time``, then ``@pytest.mark.hw``, then the call (each wins over the ones before).
    Every measurement is recorded for the summary, JSON and baselines.
    """
    defaults = _marker_settings(request)
    min_time = request.config.getoption("hw_min_time")
    calls = 0

    def bench(
        model: Any,
        example_input: Any = None,
        *,
        inputs: Any = None,
        name: str | None = None,
        **settings: Any,
    ) -> Measurement:
        nonlocal calls
        unknown = set(settings) - SETTING_NAMES
        if unknown:
            raise TypeError(f"hw_bench: unknown setting(s) {sorted(unknown)}")
        given = {"min_time_s": min_time} if min_time is not None else {}
        run = {**given, **defaults, **settings}  # each wins over the ones before
        # one measurement a test asked for: what it set wins, the board's table fills the rest
        merged = {**table_entries(hw_target.spec, BenchRule.FLAG_WINS, given=run), **run}
        if "cpus" in merged:
            merged["cpus"] = _cpus(merged["cpus"])
        if "min_time_s" in merged and "max_time_s" not in merged:  # a long min raises the cap
            merged["max_time_s"] = max(BenchSettings.max_time_s, 2 * merged["min_time_s"])
        if is_torch_module(model):
            model = torch_to_onnx(model, example_input)
        else:
            model = resolve_model(model, request)
        failure = None
        try:
            chosen = BenchSettings(**merged)
            chosen.validate()
        except ValueError as exc:
            failure = f"hw_bench: bad setting: {exc}"
        if failure is not None:
            pytest.fail(failure, pytrace=False)
        try:
            m = hw_target.device.bench(model, chosen, inputs=inputs)
        except HwnasError as exc:
            failure = f"hwnas: {exc}".splitlines()[0]
        if failure is not None:
            pytest.fail(failure, pytrace=False)
        key = request.node.nodeid
        if name is not None:
            key = f"{key}::{name}"
        elif calls:
            key = f"{key}#{calls + 1}"
        calls += 1
        entry = Entry(key, hw_target.requested, hw_target.name, m.to_dict())
        request.node.user_properties.append((RECORD_KEY, entry.as_dict()))
        return m

    return bench
