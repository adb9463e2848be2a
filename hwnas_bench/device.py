"""``Device``: one board, reached through a transport, asked to measure models.

Every call has a timeout. When the link breaks or the agent stops answering, the call
raises a typed error naming the target and the step, the transport is closed, and the next
call connects afresh. An error the agent reports (a bad model, a wrong input) leaves the
connection up: the agent is still serving.

A ``Device`` may be shared between threads: each call holds the device's lock from its
first frame to its last (the agent serves one request at a time anyway), so calls from
two threads run one after the other, never interleaved on the wire.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from device_agent.protocol import BenchSettings, ErrorCode, Op, pack_tensors

from .channel import Channel, ProgressCallback
from .errors import (
    AgentError,
    ConnectError,
    ConnectionLostError,
    DeployError,
    DeviceTimeoutError,
    HwnasError,
    InputFileError,
    LinkError,
)
from .facts import BoardFacts
from .measurement import Measurement, ModelInfo, from_bench_reply
from .transports.base import Transport

ModelSource = str | Path | bytes
T = TypeVar("T")

#: Errors after which the link cannot be trusted: close it, reconnect on the next call.
_LINK_ERRORS = (ConnectionLostError, DeviceTimeoutError, LinkError)


@dataclass(frozen=True)
class LoadedModel:
    data: bytes
    sha256: str
    name: str | None
    source: str | None = None  #: the path as the user gave it, for messages

    @classmethod
    def load(cls, model: ModelSource) -> LoadedModel:
        if isinstance(model, bytes):
            if not model:
                raise HwnasError("the model bytes are empty")
            return cls(model, hashlib.sha256(model).hexdigest(), None)
        path = Path(model)
        try:
            data = path.read_bytes()
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise InputFileError(f"cannot read model {path}: {why}", str(path)) from exc
        if not data:
            raise InputFileError(f"model file {path} is empty", str(path))
        return cls(data, hashlib.sha256(data).hexdigest(), path.name, str(path))

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.sha256, len(self.data), self.name)

    def named_error(self, exc: AgentError) -> AgentError:
        """An agent error about this model, saying which of the user's files it is."""
        if exc.code != ErrorCode.INVALID_MODEL.value or self.source is None:
            return exc
        # the agent knows the model only by its sha256 (and by its cache file, named so)
        message = re.sub(rf"(model )?\S*{self.sha256[:12]}\S*", "the model", exc.message)
        return AgentError(exc.target, exc.step, exc.code, f"{self.source}: {message}")


@dataclass(frozen=True)
class BenchFailure:
    """A model of :meth:`Device.bench_many` that could not be measured, and why."""

    model: str  #: the file name, or the sha256 for bytes
    sha256: str | None  #: None when the model could not even be read
    error: HwnasError
    code: str | None = None  #: the agent's error code (``ErrorCode``) for an AgentError


@dataclass(frozen=True)
class Profile:
    """Per-node times from onnxruntime's profiler; ``trace`` is the raw Chrome trace if asked."""

    target: str
    summary: dict[str, Any]
    trace: bytes | None


class Device:
    def __init__(
        self,
        transport: Transport,
        *,
        timeout: float = 30.0,
        idle_timeout: float = 15.0,
        token: str | None = None,
    ) -> None:
        self.transport = transport
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.token = token
        self.facts: BoardFacts | None = None  #: from the latest hello; None when closed
        self._channel: Channel | None = None
        self._lock = threading.RLock()  # one exchange at a time (see the module docstring)

    @property
    def name(self) -> str:
        return self.transport.target

    def __repr__(self) -> str:
        return f"Device({self.name!r}, {self.transport.description})"

    # -- connection -----------------------------------------------------------------------

    def open(self) -> BoardFacts:
        """Connect (start the agent if needed) and greet it; return the board facts."""
        with self._lock:
            if self._channel is not None and self.transport.is_open and self.facts is not None:
                return self.facts
            self.close()
            self.transport.open(self.timeout)
            self._channel = Channel(self.transport)
            return self._call(self._hello)

    def close(self) -> None:
        with self._lock:
            self._channel = None
            self.facts = None
            self.transport.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[[Channel], T]) -> T:
        with self._lock:
            if self._channel is None or not self.transport.is_open:
                self.open()
            assert self._channel is not None
            try:
                return fn(self._channel)
            except _LINK_ERRORS:
                self.close()
                raise

    def _hello(self, channel: Channel) -> BoardFacts:
        header: dict[str, Any] = {"op": Op.HELLO.value}
        if self.token:
            header["token"] = self.token
        reply = dict(channel.request(header, timeout=self.timeout).header)
        reply.pop("ok", None)
        facts = BoardFacts.from_mapping(reply)
        if facts.heartbeat_s is not None:
            channel.heartbeat_s = float(facts.heartbeat_s)
        self.facts = facts
        return facts

    @property
    def channel(self) -> Channel:
        """The open channel (connecting first); for diagnostics and benchmarks."""
        self.open()
        assert self._channel is not None
        return self._channel

    # -- requests -------------------------------------------------------------------------

    def hello(self) -> BoardFacts:
        """Fresh board facts (temperatures and clocks change)."""
        return self._call(self._hello)

    def put_model(self, model: ModelSource) -> ModelInfo:
        """Make sure the board holds the model (uploaded only if it does not)."""
        loaded = LoadedModel.load(model)
        self._put(loaded)
        return loaded.info

    def _put(self, loaded: LoadedModel) -> None:
        timeout = self.timeout + 3 * self.transport.transfer_time(len(loaded.data))
        self._call(lambda ch: ch.upload(Op.PUT_MODEL, loaded.data, timeout=timeout))

    def _put_inputs(self, inputs: Mapping[str, np.ndarray]) -> str:
        data = pack_tensors(inputs)
        timeout = self.timeout + 3 * self.transport.transfer_time(len(data))
        self._call(lambda ch: ch.upload(Op.PUT_INPUTS, data, timeout=timeout))
        return hashlib.sha256(data).hexdigest()

    def bench(
        self,
        model: ModelSource,
        settings: BenchSettings | None = None,
        *,
        inputs: Mapping[str, np.ndarray] | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        **overrides: Any,
    ) -> Measurement:
        """Measure ``model`` on this board; ``overrides`` replace fields of ``settings``."""
        settings = replace(settings or BenchSettings(), **overrides)
        settings.validate()
        return self._bench(LoadedModel.load(model), settings, inputs, timeout, on_progress)

    def _bench(
        self,
        loaded: LoadedModel,
        settings: BenchSettings,
        inputs: Mapping[str, np.ndarray] | None,
        timeout: float | None,
        on_progress: ProgressCallback | None,
    ) -> Measurement:
        with self._lock:  # the model and inputs on the board stay ours until the reply
            self._put(loaded)
            if inputs is not None:
                settings = replace(settings, inputs=self._put_inputs(inputs))
            limit = timeout or self._limit(settings)
            header = {"op": Op.BENCH.value, "model": loaded.sha256, **settings.to_wire()}
            try:
                reply = self._call(
                    lambda ch: ch.request(
                        header,
                        timeout=limit,
                        idle_timeout=self.idle_timeout,
                        on_progress=on_progress,
                    )
                )
            except AgentError as exc:
                raise loaded.named_error(exc) from exc
            facts = self.facts.to_dict() if self.facts is not None else {}
        samples = np.frombuffer(reply.payload, dtype=reply.header["samples"]["dtype"])
        return from_bench_reply(
            self.name, facts, loaded.info, reply.header, (samples / 1e6).tolist()
        )

    def bench_many(
        self,
        models: Iterable[ModelSource],
        settings: BenchSettings | None = None,
        *,
        inputs: Mapping[str, np.ndarray] | None = None,
        on_result: Callable[[int, Measurement | BenchFailure], None] | None = None,
        **overrides: Any,
    ) -> list[Measurement | BenchFailure]:
        """Measure each model in turn: one result per model, in order.

        A model that cannot be measured (an invalid ONNX file, inputs that do not fit, the
        link breaking during it) gives a :class:`BenchFailure`, and the next model is
        measured; after a broken link the next model connects afresh. If the board cannot
        be reached or the agent cannot be started there (a :class:`ConnectError` or
        :class:`DeployError` on reconnecting), the models left get that failure without a
        try each. ``on_result(index, result)`` is called as each
        result comes. Models are uploaded and measured one after the other: the agent
        serves one request at a time, so uploading the next model during a benchmark would
        only queue behind it. A settings error raises at once, before any model.
        """
        settings = replace(settings or BenchSettings(), **overrides)
        settings.validate()
        results: list[Measurement | BenchFailure] = []
        unreachable: ConnectError | DeployError | None = None
        for index, model in enumerate(models):
            result: Measurement | BenchFailure
            loaded: LoadedModel | None = None
            try:
                if unreachable is not None:
                    raise unreachable
                loaded = LoadedModel.load(model)
                result = self._bench(loaded, settings, inputs, None, None)
            except HwnasError as exc:
                if isinstance(exc, (ConnectError, DeployError)):  # raised only on connecting
                    unreachable = exc
                result = BenchFailure(
                    model=_model_label(model, loaded),
                    sha256=loaded.sha256 if loaded else None,
                    error=exc,
                    code=exc.code if isinstance(exc, AgentError) else None,
                )
            results.append(result)
            if on_result is not None:
                on_result(index, result)
        return results

    def profile(
        self,
        model: ModelSource,
        settings: BenchSettings | None = None,
        *,
        iterations: int = 20,
        trace: bool = False,
        timeout: float | None = None,
        **overrides: Any,
    ) -> Profile:
        """Per-node times from onnxruntime's profiler over ``iterations`` runs."""
        settings = replace(settings or BenchSettings(), **overrides)
        settings.validate()
        loaded = LoadedModel.load(model)
        header = {
            "op": Op.PROFILE.value,
            "model": loaded.sha256,
            "iterations": iterations,
            "trace": trace,
            **settings.to_wire(),
        }
        limit = timeout or self._limit(settings)
        with self._lock:
            self._put(loaded)
            try:
                reply = self._call(
                    lambda ch: ch.request(header, timeout=limit, idle_timeout=self.idle_timeout)
                )
            except AgentError as exc:
                raise loaded.named_error(exc) from exc
        return Profile(self.name, reply.header, reply.payload if trace else None)

    def reset(self) -> None:
        """Ask the agent to free what the last benchmark loaded (session, inputs).

        A farm does this when a lease ends, so an idle agent does not keep a model in the
        memory of a board that someone else is measuring on.
        """
        if self._channel is None or not self.transport.is_open:
            return  # nothing is loaded in an agent that is not running: do not start one
        self._call(lambda ch: ch.request({"op": Op.RESET.value}, timeout=self.timeout))

    def _limit(self, settings: BenchSettings) -> float:
        """A ceiling for one bench/profile call. Liveness is the idle timeout's job (the
        agent heartbeats every second); this only stops a run that never ends, so it leaves
        room for loading a large model and slow warm-up runs on a small board."""
        return self.timeout + 2 * settings.expected_duration_s() + 600.0

    def shutdown(self) -> None:
        """Ask the agent to exit (a serial or TCP agent stops serving)."""
        self._call(lambda ch: ch.request({"op": Op.SHUTDOWN.value}, timeout=self.timeout))
        self.close()


def _model_label(model: ModelSource, loaded: LoadedModel | None) -> str:
    if isinstance(model, bytes):
        return loaded.sha256 if loaded else "empty model bytes"
    return Path(model).name
