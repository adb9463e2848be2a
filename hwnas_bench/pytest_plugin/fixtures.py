"""``hw_target``: a leased board. ``hw_bench``: measure a model on it, recorded for the report."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import pytest

from device_agent.protocol import BenchSettings

from ..device import Device
from ..errors import ConnectError, ConnectionLostError, DeviceTimeoutError, HwnasError
from ..export import is_torch_module, torch_to_onnx
from ..farm import BoardUnhealthyError
from ..measurement import Measurement
from ..report import Entry
from .state import get_state

#: Errors that mean "the board cannot be reached" (what --hw-skip-unreachable skips).
UNREACHABLE = (ConnectError, ConnectionLostError, DeviceTimeoutError, BoardUnhealthyError)
RECORD_KEY = "hwnas"
SETTING_NAMES = {f.name for f in fields(BenchSettings)}


@dataclass(frozen=True)
class HwTarget:
    """The board a test runs on, leased exclusively for the test's duration."""

    requested: str  #: what the test was parametrized with: a name or ``tag:X``
    name: str  #: the board that was leased
    facts: dict[str, Any]  #: its ``hello`` facts
    device: Device
    profile: str | None


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
        )
    except HwnasError as exc:  # unreachable, unhealthy, busy, misconfigured
        error = exc
    if error is not None:  # outside the except block: one line, no exception chain
        message = f"hwnas: {error}".splitlines()[0]
        if isinstance(error, UNREACHABLE) and request.config.getoption("hw_skip_unreachable"):
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    try:
        yield HwTarget(what, lease.name, lease.facts, lease.device, lease.spec.profile)
    finally:
        lease.release()


Bench = Callable[..., Measurement]


@pytest.fixture
def hw_bench(request: pytest.FixtureRequest, hw_target: HwTarget) -> Bench:
    """``hw_bench(model, example_input=None, *, inputs=None, name=None, **settings)``.

    ``model``: a path to an ONNX file, ONNX bytes, or a torch module (then
    ``example_input`` is required and the module is exported with the dynamo exporter).
    Settings come from the defaults, then ``--hw-min-time``, then ``@pytest.mark.hw``,
    then the call. Every measurement is recorded for the summary, JSON and baselines.
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
        merged = {**({"min_time_s": min_time} if min_time is not None else {}), **defaults}
        merged.update(settings)
        if "min_time_s" in merged and "max_time_s" not in merged:  # a long min raises the cap
            merged["max_time_s"] = max(BenchSettings.max_time_s, 2 * merged["min_time_s"])
        if is_torch_module(model):
            model = torch_to_onnx(model, example_input)
        failure = None
        try:
            m = hw_target.device.bench(model, BenchSettings(**merged), inputs=inputs)
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
