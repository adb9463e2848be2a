"""onnxruntime sessions and the timed loop.

The loop is deliberately the plainest possible: ``session.run`` on prepared feeds, timed
with ``perf_counter_ns`` around each call and nothing else inside the timed region, so that
the agent's figures match what a user's own in-process loop would see (benchmarks/ checks
this ratio).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnxruntime as ort

from .errors import AgentError, out_of_memory
from .outputs import OutputGuard
from .protocol import BenchSettings, ErrorCode
from .sysinfo import release_memory

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session_options(settings: BenchSettings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = _OPT_LEVELS[settings.graph_optimization]
    options.log_severity_level = 3  # errors only: warnings would flood the board's stderr
    return options


def _is_oom(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, MemoryError) or "bad_alloc" in text or "Failed to allocate" in text


def create_session(
    path: Path,
    settings: BenchSettings,
    options: Optional[ort.SessionOptions] = None,
    label: Optional[str] = None,
) -> ort.InferenceSession:
    """A session on ``settings.provider``; ``label`` ("model 0123abcd…") replaces the cache
    path in onnxruntime's messages, which would name a file the user never saw."""
    available = ort.get_available_providers()
    if settings.provider not in available:
        raise AgentError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            f"execution provider {settings.provider} is not in this onnxruntime build "
            f"(available: {', '.join(available)})",
        )
    try:
        session = ort.InferenceSession(
            str(path), options or session_options(settings), providers=[settings.provider]
        )
    except Exception as exc:  # onnxruntime raises plain Exception subclasses
        text = str(exc).replace(str(path), label or path.name)
        if _is_oom(exc):
            raise out_of_memory("loading the model") from exc
        if type(exc).__name__ == "EPFail":
            raise AgentError(
                ErrorCode.PROVIDER_UNAVAILABLE, f"onnxruntime cannot load the model: {text}"
            ) from exc
        raise AgentError(
            ErrorCode.INVALID_MODEL,
            f"onnxruntime cannot load the model: {text}; check that the file is an ONNX "
            "model this onnxruntime can read (onnx.checker.check_model, the opset)",
        ) from exc
    if settings.provider not in session.get_providers():
        raise AgentError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            f"{settings.provider} failed to initialise; onnxruntime fell back to "
            f"{session.get_providers()}",
        )
    return session


class SessionCache:
    """Keeps the last session so repeated benchmarks of one model skip loading it.

    The key holds the CPUs the agent was pinned to: onnxruntime's thread pools are made,
    and take their affinity, when the session is created.
    """

    def __init__(self) -> None:
        self._key: Optional[Tuple[Any, ...]] = None
        self._session: Optional[ort.InferenceSession] = None

    @staticmethod
    def key(
        sha256: str, settings: BenchSettings, affinity: Optional[Sequence[int]] = None
    ) -> Tuple[Any, ...]:
        return (
            sha256,
            settings.provider,
            settings.threads,
            settings.inter_op_threads,
            settings.graph_optimization,
            tuple(affinity) if affinity is not None else None,
        )

    def drop(self) -> None:
        if self._session is not None:
            self._key, self._session = None, None
            release_memory()

    def prepare(
        self, sha256: str, settings: BenchSettings, affinity: Optional[Sequence[int]] = None
    ) -> None:
        """Free a cached session that this benchmark will not use, before memory is read."""
        if self.key(sha256, settings, affinity) != self._key:
            self.drop()

    def get(
        self,
        sha256: str,
        path: Path,
        settings: BenchSettings,
        affinity: Optional[Sequence[int]] = None,
        label: Optional[str] = None,
    ) -> Tuple[Any, bool]:
        key = self.key(sha256, settings, affinity)
        if key == self._key and self._session is not None:
            return self._session, True
        self.drop()
        self._session = create_session(path, settings, label=label)
        self._key = key
        return self._session, False


def _run_error(exc: Exception) -> AgentError:
    if _is_oom(exc):
        return out_of_memory("while running the model")
    if type(exc).__name__ == "InvalidArgument":
        return AgentError(ErrorCode.BAD_INPUT, f"onnxruntime rejected the inputs: {exc}")
    return AgentError(ErrorCode.RUNTIME_ERROR, f"onnxruntime failed while running: {exc}")


@dataclass
class TimedRun:
    samples_ns: np.ndarray
    window_s: float
    stopped_by: str
    warmup_runs: int
    warmup_s: float
    warmup_cut: bool = False  #: warm-up stopped at max_time_s before its runs or time were done


class LoopProgress:
    """Written by the loop, read by the heartbeat thread; plain attributes are enough.

    ``abort`` is set by the heartbeat when the host has gone: the loop stops instead of
    running on, unheard, on a board that someone else may lease next.
    """

    def __init__(self) -> None:
        self.stage = "starting"
        self.iterations = 0
        self.abort = False


def _aborted() -> AgentError:
    return AgentError(ErrorCode.ABORTED, "the host went away; the benchmark was stopped")


def timed_loop(
    session: Any,
    feeds: Mapping[str, np.ndarray],
    settings: BenchSettings,
    progress: LoopProgress,
    on_window: Callable[[bool], None] = lambda started: None,
    guard: Optional[OutputGuard] = None,
) -> TimedRun:
    """Warm up, then time ``session.run`` until the stop rule holds.

    Warm-up runs ``warmup_runs`` times and at least ``warmup_min_s``, but never longer than
    ``max_time_s`` (``warmup_cut`` says when it was stopped there).

    ``on_window(True)`` is called just before the timed window and ``on_window(False)``
    just after it (the power sampler starts and stops there).

    The first run, warm-up or timed, runs under ``guard`` (see ``outputs``): armed before
    it, disarmed after it, both outside the timed region. Only a first warm-up run's
    outputs are added up (keeping a timed run's would change what the loop times).
    """
    run = session.run
    clock = time.perf_counter_ns
    feeds = dict(feeds)
    window_open = False
    first = guard  # the guard of the first run, until it has run
    try:
        progress.stage = "warmup"
        if first is not None:
            first.arm()
        start = clock()
        warm = 0
        min_warm_ns = int(settings.warmup_min_s * 1e9)
        max_warm_ns = int(settings.max_time_s * 1e9)
        warmup_cut = False
        while warm < settings.warmup_runs or clock() - start < min_warm_ns:
            if clock() - start >= max_warm_ns:
                warmup_cut = True
                break
            if first is not None:
                first.disarm(run(None, feeds))
                first = None
            else:
                run(None, feeds)
            warm += 1
            if progress.abort:
                raise _aborted()
        warmup_s = (clock() - start) / 1e9

        samples: List[int] = []
        append = samples.append
        min_n, max_n = settings.min_iterations, settings.max_iterations
        min_ns, max_ns = int(settings.min_time_s * 1e9), int(settings.max_time_s * 1e9)
        progress.stage = "timed"
        on_window(True)
        window_open = True
        t0 = clock()
        while True:
            a = clock()
            run(None, feeds)
            b = clock()
            if first is not None:
                first.disarm()
                first = None
            append(b - a)
            n = len(samples)
            progress.iterations = n
            if progress.abort:  # outside the timed region, like everything else here
                raise _aborted()
            elapsed = b - t0
            if n >= max_n:
                stopped_by = "max_iterations"
                break
            if elapsed >= max_ns:
                stopped_by = "max_time"
                break
            if n >= min_n and elapsed >= min_ns:
                stopped_by = "min_iterations_and_time"
                break
        window_s = (clock() - t0) / 1e9
    except AgentError:
        raise
    except Exception as exc:
        refused = guard.error_for(exc) if guard is not None else None
        raise (refused or _run_error(exc)) from exc
    finally:
        if guard is not None:
            guard.lift()  # whatever happened, the limit does not outlive the first run
        if window_open:  # the power sampler stops on every path: done, aborted or failed
            on_window(False)
    progress.stage = "done"
    return TimedRun(
        np.asarray(samples, dtype=np.int64), window_s, stopped_by, warm, warmup_s, warmup_cut
    )
