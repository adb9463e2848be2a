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
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import onnxruntime as ort

from .errors import AgentError
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


def create_session(
    path: Path, settings: BenchSettings, options: Optional[ort.SessionOptions] = None
) -> ort.InferenceSession:
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
        code = ErrorCode.PROVIDER_UNAVAILABLE if type(exc).__name__ == "EPFail" else None
        raise AgentError(
            code or ErrorCode.INVALID_MODEL, f"onnxruntime cannot load the model: {exc}"
        ) from exc
    if settings.provider not in session.get_providers():
        raise AgentError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            f"{settings.provider} failed to initialise; onnxruntime fell back to "
            f"{session.get_providers()}",
        )
    return session


class SessionCache:
    """Keeps the last session so repeated benchmarks of one model skip loading it."""

    def __init__(self) -> None:
        self._key: Optional[Tuple[Any, ...]] = None
        self._session: Optional[ort.InferenceSession] = None

    @staticmethod
    def key(sha256: str, settings: BenchSettings) -> Tuple[Any, ...]:
        return (
            sha256,
            settings.provider,
            settings.threads,
            settings.inter_op_threads,
            settings.graph_optimization,
        )

    def drop(self) -> None:
        if self._session is not None:
            self._key, self._session = None, None
            release_memory()

    def prepare(self, sha256: str, settings: BenchSettings) -> None:
        """Free a cached session that this benchmark will not use, before memory is read."""
        if self.key(sha256, settings) != self._key:
            self.drop()

    def get(self, sha256: str, path: Path, settings: BenchSettings) -> Tuple[Any, bool]:
        key = self.key(sha256, settings)
        if key == self._key and self._session is not None:
            return self._session, True
        self.drop()
        self._session = create_session(path, settings)
        self._key = key
        return self._session, False


def _run_error(exc: Exception) -> AgentError:
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
) -> TimedRun:
    """Warm up, then time ``session.run`` until the stop rule holds.

    ``on_window(True)`` is called just before the timed window and ``on_window(False)``
    just after it (the power sampler starts and stops there).
    """
    run = session.run
    clock = time.perf_counter_ns
    feeds = dict(feeds)
    window_open = False
    try:
        progress.stage = "warmup"
        start = clock()
        warm = 0
        min_warm_ns = int(settings.warmup_min_s * 1e9)
        while warm < settings.warmup_runs or clock() - start < min_warm_ns:
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
        raise _run_error(exc) from exc
    finally:
        if window_open:  # the power sampler stops on every path: done, aborted or failed
            on_window(False)
    progress.stage = "done"
    return TimedRun(np.asarray(samples, dtype=np.int64), window_s, stopped_by, warm, warmup_s)


def profile_nodes(trace: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Aggregate onnxruntime's Chrome-trace profile into per-node times."""
    nodes: Dict[Tuple[str, str, str], List[int]] = {}
    runs: List[int] = []
    for event in trace:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            runs.append(int(event.get("dur", 0)))
        elif event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time"):
            args = event.get("args", {})
            name = str(event["name"])[: -len("_kernel_time")]
            key = (name, str(args.get("op_name", "")), str(args.get("provider", "")))
            nodes.setdefault(key, []).append(int(event.get("dur", 0)))
    total = sum(sum(d) for d in nodes.values()) or 1
    rows = [
        {
            "name": name,
            "op_type": op,
            "provider": provider,
            "calls": len(durs),
            "total_us": sum(durs),
            "mean_us": sum(durs) / len(durs),
            "share": sum(durs) / total,
        }
        for (name, op, provider), durs in nodes.items()
    ]
    rows.sort(key=lambda r: int(r["total_us"]), reverse=True)  # type: ignore[call-overload]
    return {
        "runs": len(runs),
        "model_run_mean_us": (sum(runs) / len(runs)) if runs else None,
        "nodes": rows,
    }
