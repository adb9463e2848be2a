"""What each request does on the board: store models and inputs, benchmark, profile."""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Tuple, TypeVar

from . import __version__
from .errors import AgentError, out_of_memory
from .inputs import Feeds
from .model_store import ModelStore, is_sha256
from .protocol import (
    PROTOCOL_VERSION,
    SAMPLES_DTYPE,
    BenchSettings,
    ErrorCode,
    Frame,
    FrameType,
)
from .uploads import InputStore, PendingInputs, Upload

if TYPE_CHECKING:  # measure imports onnxruntime: loaded on the first benchmark
    from .measure import BenchParts

Reply = Tuple[FrameType, Dict[str, Any], bytes]
_H = TypeVar("_H", bound=Callable[..., Reply])


def _memory_errors(handler: _H) -> _H:
    """A MemoryError in a request is ``out_of_memory``, not a bug (``internal``)."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Reply:
        try:
            return handler(*args, **kwargs)
        except MemoryError as exc:
            frame = args[-1] if args else None
            op = frame.header.get("op", "the request") if isinstance(frame, Frame) else "?"
            raise out_of_memory(f"during {op}") from exc

    return wrapper  # type: ignore[return-value]


def _field(frame: Frame, name: str, kind: type) -> Any:
    value = frame.header.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise AgentError(ErrorCode.BAD_REQUEST, f"field '{name}' must be a {kind.__name__}")
    return value


def _sha_field(frame: Frame, name: str) -> str:
    value = frame.header.get(name)
    if not is_sha256(value):
        raise AgentError(ErrorCode.BAD_REQUEST, f"field '{name}' must be a lowercase hex sha256")
    return str(value)


def _settings(frame: Frame) -> BenchSettings:
    try:
        settings = BenchSettings.from_wire(frame.header)
        settings.validate()
    except (TypeError, ValueError) as exc:
        raise AgentError(ErrorCode.BAD_REQUEST, f"bad settings: {exc}") from exc
    return settings


class Handlers:
    """The agent's state on the board: model cache, input packs, the upload in flight."""

    def __init__(
        self,
        store: ModelStore,
        max_input_bytes: Optional[int] = None,
        *,
        max_output_bytes: Optional[int] = None,
        power_root: Path = Path("/"),
        power_plugins: Sequence[str] = (),
        sysfs_root: Path = Path("/"),
    ) -> None:
        """``max_input_bytes`` caps the inputs of one benchmark, sent or synthesised (None: a
        quarter of the board's available memory, at most 1 GiB); ``max_output_bytes`` caps
        what one run of a model allocates, its outputs and the tensors on the way to them
        (None: the same default); ``sysfs_root`` is where ``sys/devices/system/cpu`` is
        read and, for ``governor``, written."""
        from . import inputs, power, sysinfo  # sysinfo reads onnxruntime's version lazily
        from .sysinfo._files import read_text

        if max_input_bytes is None or max_output_bytes is None:
            default = inputs.default_cap(read_text(Path("/proc/meminfo")))
            max_input_bytes = default if max_input_bytes is None else max_input_bytes
            max_output_bytes = default if max_output_bytes is None else max_output_bytes
        self.store = store
        self.inputs = InputStore(max_input_bytes)
        self.max_input_bytes = max_input_bytes
        self.max_output_bytes = max_output_bytes
        self.sysfs_root = sysfs_root
        self.upload: Optional[Upload] = None
        self.abandoned: Dict[str, str] = {}  # sha256 -> why its upload never finished
        self.power = power.discover_meters(power_root, plugins=power_plugins)
        self.static = sysinfo.static_facts()
        self.memory = sysinfo.MemoryProbe()
        self.baseline_rss_mb = self.memory.rss_mb()
        self._sessions: Any = None  # runner.SessionCache, made on first use (imports ort)
        self._progress: Any = None

    # -- hello ----------------------------------------------------------------------------

    def hello_facts(self) -> Dict[str, Any]:
        from . import sysinfo

        facts: Dict[str, Any] = {
            "agent_version": __version__,
            "protocol": PROTOCOL_VERSION,
            "pid": os.getpid(),
        }
        facts.update(self.static)
        facts.update(sysinfo.dynamic_state())
        facts["power_meters"] = [
            {
                "source": m.source,
                "kind": m.kind,
                "scope": m.scope,
                "update_interval_ms": None
                if m.update_interval_s is None
                else m.update_interval_s * 1000.0,
            }
            for m in self.power.meters
        ]
        # not "/": the meters read a tree standing in for /sys (their sources say so too)
        facts["power_root"] = str(self.power.root)
        facts["power_unavailable"] = None if self.power.meters else self.power.unavailable_reason()
        facts["cache"] = {
            "dir": str(self.store.root),
            "max_bytes": self.store.max_bytes,
            "models": len(self.store.models()),
        }
        facts["agent_rss_mb"] = self.baseline_rss_mb
        facts["max_input_bytes"] = self.max_input_bytes
        facts["max_output_bytes"] = self.max_output_bytes
        return facts

    def progress(self) -> Dict[str, Any]:
        progress = self._progress  # read once: the request may end meanwhile
        if progress is None:
            return {}
        return {"stage": progress.stage, "iterations": progress.iterations}

    def abort(self) -> None:
        """The host is gone: make a running benchmark stop at its next iteration."""
        progress = self._progress
        if progress is not None:
            progress.abort = True

    @property
    def sessions(self) -> Any:
        if self._sessions is None:
            from . import runner

            self._sessions = runner.SessionCache()
        return self._sessions

    def reset(self, frame: Frame) -> Reply:
        """Free what a benchmark left loaded (session, input packs); the model cache stays."""
        from .sysinfo import release_memory

        if self._sessions is not None:  # never loads onnxruntime just to drop nothing
            self._sessions.drop()
        self.inputs.clear()
        release_memory()
        return FrameType.REPLY, {"rss_mb": self.memory.rss_mb()}, b""

    # -- uploads --------------------------------------------------------------------------

    @_memory_errors
    def put_model(self, frame: Frame) -> Reply:
        sha, size = _sha_field(frame, "sha256"), _field(frame, "size", int)
        if self.store.get(sha) is not None:
            return FrameType.REPLY, {"cached": True, "sha256": sha}, b""
        if size <= 0:
            raise AgentError(ErrorCode.BAD_REQUEST, "size must be > 0")
        self.upload = Upload(self.store.begin(sha, size))
        return FrameType.REPLY, {"cached": False, "sha256": sha, "next": 0}, b""

    @_memory_errors
    def put_inputs(self, frame: Frame) -> Reply:
        sha, size = _sha_field(frame, "sha256"), _field(frame, "size", int)
        if self.inputs.get(sha) is not None:
            return FrameType.REPLY, {"cached": True, "sha256": sha}, b""
        if size <= 0:
            raise AgentError(ErrorCode.BAD_REQUEST, "size must be > 0")
        self.upload = Upload(PendingInputs(sha, size, self.max_input_bytes))
        return FrameType.REPLY, {"cached": False, "sha256": sha, "next": 0}, b""

    @_memory_errors
    def chunk(self, frame: Frame) -> Reply:
        upload = self.upload
        if upload is None:
            raise AgentError(ErrorCode.UPLOAD_STATE, "chunk received but no upload is in progress")
        offset = _field(frame, "offset", int)
        if offset == upload.received:
            try:
                upload.pending.write(frame.payload)
            except AgentError as exc:  # past the declared size, a full disk: the upload ends
                self.abandon_upload(exc.message)
                raise
            except MemoryError as exc:
                self.abandon_upload("the board ran out of memory")
                raise out_of_memory(f"receiving {upload.describe()}") from exc
        # offset != received: a repeat or a gap; either way "next" tells the host where to go
        if not upload.complete:
            return FrameType.ACK, {"next": upload.received, "done": False}, b""
        self.upload = None
        sha = upload.pending.sha256
        try:
            if isinstance(upload.pending, PendingInputs):
                self.inputs.add(sha, upload.pending.commit())
            else:
                upload.pending.commit()
        except AgentError as exc:
            self.abandoned[sha] = f"its upload was refused: {exc.message}"
            raise
        self.abandoned.pop(sha, None)
        return FrameType.ACK, {"next": upload.received, "done": True, "sha256": sha}, b""

    def abandon_upload(self, why: str) -> None:
        upload = self.upload
        if upload is None:
            return
        self.upload = None
        self.abandoned[upload.pending.sha256] = f"its upload stopped at {upload.describe()}: {why}"
        upload.pending.discard()

    # -- bench and profile ----------------------------------------------------------------

    def _model_path(self, frame: Frame) -> Tuple[str, Path]:
        sha = _sha_field(frame, "model")
        path = self.store.get(sha)
        if path is None:
            why = self.abandoned.get(sha, "send it with put_model first")
            raise AgentError(
                ErrorCode.MODEL_NOT_FOUND, f"model {sha[:12]}… is not on the board; {why}"
            )
        return sha, path

    def feeds(self, session: Any, settings: BenchSettings) -> Feeds:
        """The inputs of a run: the host's pack checked against the model, or synthesised."""
        from . import inputs

        declared = session.get_inputs()
        if settings.inputs is None:
            return inputs.synthesise_feeds(
                declared, settings.dims, settings.seed, self.max_input_bytes
            )
        pack = self.inputs.get(settings.inputs)
        if pack is None:
            raise AgentError(
                ErrorCode.BAD_INPUT,
                f"input pack {settings.inputs[:12]}… is not on the board; send it with put_inputs",
            )
        return inputs.received(declared, pack, settings.dims)

    def _parts(self) -> BenchParts:
        from .measure import BenchParts

        return BenchParts(
            self.power,
            self.memory,
            self.sessions,
            self.feeds,
            self.baseline_rss_mb,
            self.sysfs_root,
            self.max_output_bytes,
        )

    @_memory_errors
    def bench(self, frame: Frame) -> Reply:
        from . import runner
        from .measure import bench_once

        sha, path = self._model_path(frame)
        settings = _settings(frame)
        self._progress = runner.LoopProgress()
        try:
            header, samples = bench_once(self._parts(), sha, path, settings, self._progress)
        finally:
            self._progress = None
        header["samples"] = {"dtype": SAMPLES_DTYPE, "unit": "ns", "count": int(samples.size)}
        return FrameType.REPLY, header, samples.astype(SAMPLES_DTYPE).tobytes()

    @_memory_errors
    def profile(self, frame: Frame) -> Reply:
        from . import runner
        from .measure import controlled, model_label, run_loop
        from .profiling import profile_nodes

        sha, path = self._model_path(frame)
        settings = _settings(frame)
        iterations = frame.header.get("iterations", 20)
        if isinstance(iterations, bool) or not isinstance(iterations, int):
            raise AgentError(ErrorCode.BAD_REQUEST, "iterations must be an integer in 1..100000")
        if not 1 <= iterations <= 100_000:
            raise AgentError(ErrorCode.BAD_REQUEST, "iterations must be an integer in 1..100000")
        settings.min_iterations = settings.max_iterations = iterations
        settings.min_time_s = 0.0
        self._progress = runner.LoopProgress()
        try:
            with controlled(settings, self.sysfs_root) as control, tempfile.TemporaryDirectory(
                prefix="hwnas-profile-"
            ) as tmp:
                options = runner.session_options(control.settings)
                options.enable_profiling = True
                options.profile_file_prefix = os.path.join(tmp, "trace")
                session = runner.create_session(path, control.settings, options, model_label(sha))
                feeds = self.feeds(session, control.settings)
                try:
                    run = run_loop(
                        session,
                        feeds,
                        control,
                        self._progress,
                        max_output_bytes=self.max_output_bytes,
                    )
                finally:
                    trace_path = session.end_profiling()
                with open(trace_path, "rb") as fh:
                    raw = fh.read()
        finally:
            self._progress = None
        summary = profile_nodes(json.loads(raw), run.warmup_runs)
        summary["model"] = sha
        summary["providers"] = session.get_providers()
        summary["settings"] = control.settings.to_wire()
        summary["inputs"] = feeds.described
        summary["notes"] = control.notes
        want_trace = bool(frame.header.get("trace", False))
        return FrameType.REPLY, summary, raw if want_trace else b""
