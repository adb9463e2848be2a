"""One benchmark, start to finish: the reply header of a ``bench`` request and its samples.

Its collaborators (power meters, memory probe, session cache, the inputs) come in as a
`BenchParts`, so this module knows nothing of the request handlers that own them.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from . import power, stats, sysinfo
from .cpu_control import GovernorControl, cap_threads, governor_set, pinned
from .errors import AgentError
from .inputs import Feeds, explain_failure
from .outputs import OutputGuard
from .protocol import BenchSettings, ErrorCode
from .runner import LoopProgress, SessionCache, TimedRun, timed_loop

#: Makes the inputs for a session: synthesised, or the host's pack checked against it.
FeedsFor = Callable[[Any, BenchSettings], Feeds]


@dataclass
class BenchParts:
    """What a benchmark uses of the agent's state."""

    meters: power.Discovery
    memory: sysinfo.MemoryProbe
    sessions: SessionCache
    feeds: FeedsFor
    baseline_rss_mb: Optional[float]
    sysfs_root: Path = Path("/")
    max_output_bytes: Optional[int] = None  #: None: what one run allocates is not bounded


@dataclass
class Controlled:
    """The measurement controls in force: effective settings, CPUs, governor, notes."""

    settings: BenchSettings
    affinity: Optional[List[int]]
    governor: Optional[GovernorControl]
    notes: List[str]


def model_label(sha: str) -> str:
    return f"model {sha[:12]}…"


@contextlib.contextmanager
def controlled(settings: BenchSettings, sysfs_root: Path) -> Iterator[Controlled]:
    """Check the governor request, pin to ``settings.cpus`` and cap the threads by them.

    The governor is only checked here (a refusal costs nothing); `governor_set` applies it
    around the loop. The affinity comes back when the block ends.
    """
    governor = None
    if settings.governor is not None:
        governor = GovernorControl(sysfs_root, settings.governor, settings.cpus)
        governor.check()
    with pinned(settings.cpus) as affinity:
        cores = len(affinity) if affinity else os.cpu_count()
        effective, notes = cap_threads(settings, cores)
        yield Controlled(effective, affinity, governor, notes)


def run_loop(
    session: Any,
    feeds: Feeds,
    control: Controlled,
    progress: LoopProgress,
    on_window: Callable[[bool], None] = lambda started: None,
    max_output_bytes: Optional[int] = None,
) -> TimedRun:
    """The timed loop under the governor asked for; a failure says what was made up.

    With ``max_output_bytes``, what one run may allocate is bounded (``outputs``)."""
    settings = control.settings
    guard = None
    if max_output_bytes is not None:
        guard = OutputGuard(max_output_bytes)
        guard.check_session(session, feeds.described)
    try:
        with governor_set(control.governor):
            run = timed_loop(session, feeds.arrays, settings, progress, on_window, guard)
    except AgentError as exc:
        raise explain_failure(exc, feeds) from exc
    if run.warmup_cut:
        control.notes.append(
            f"warm-up stopped at max_time_s ({settings.max_time_s:g} s) after {run.warmup_runs} "
            f"of {settings.warmup_runs} runs"
        )
    return run


def _meter(meters: power.Discovery, settings: BenchSettings) -> Optional[power.PowerMeter]:
    """The meter asked for, else the board's preferred one for the provider's work."""
    meter = meters.select(settings.power_meter, settings.provider)
    if settings.power_meter is not None and meter is None:
        found = [m.source for m in meters.meters] or ["none"]
        raise AgentError(
            ErrorCode.BAD_REQUEST,
            f"power meter {settings.power_meter!r} not found; the board has: {', '.join(found)}",
        )
    return meter


def _environment(
    control: Controlled,
    env_start: Dict[str, Any],
    env_end: Dict[str, Any],
    load_start: Optional[List[float]],
    load_end: Optional[List[float]],
    samples_ns: np.ndarray,
) -> Dict[str, Any]:
    drift = stats.drift(samples_ns)
    cores = sysinfo.cpu_count()
    usable = len(control.affinity) if control.affinity else cores
    threads = control.settings.threads or usable or 1
    return {
        "governor": env_start.get("governor"),
        "cpu_freq_mhz_start": env_start.get("cpu_freq_mhz"),
        "cpu_freq_mhz_end": env_end.get("cpu_freq_mhz"),
        "temperature_c_start": env_start.get("temperature_c"),
        "temperature_c_end": env_end.get("temperature_c"),
        "throttled": sysinfo.throttle_check(env_start, env_end),
        "drift": drift["detected"],
        "drift_slowdown_pct": drift["slowdown_pct"],
        "drift_p_value": drift["p_value"],
        "load_avg_start": load_start,
        "load_avg_end": load_end,
        "cpu_count": cores,
        "affinity": control.affinity,
        "governor_request": control.governor.report() if control.governor else None,
        # the load average is the whole board's: compared with all its cores
        "busy": sysinfo.busy_sentence(load_start, load_end, cores, threads),
    }


def bench_once(
    parts: BenchParts, sha: str, path: Path, settings: BenchSettings, progress: LoopProgress
) -> Tuple[Dict[str, Any], np.ndarray]:
    meter = _meter(parts.meters, settings)
    with controlled(settings, parts.sysfs_root) as control:
        effective = control.settings
        memory = parts.memory
        # the previous model must not count here
        parts.sessions.prepare(sha, effective, control.affinity)
        memory.reset_peak()
        rss_before = memory.rss_mb()
        progress.stage = "loading"
        session, reused = parts.sessions.get(
            sha, path, effective, control.affinity, model_label(sha)
        )
        feeds = parts.feeds(session, effective)
        load_start = sysinfo.load_average()

        sampler = power.PowerSampler(meter, settings.power_interval_s) if meter else None
        power_result: Optional[power.PowerResult] = None
        running = False

        def on_window(start: bool) -> None:
            nonlocal power_result, running
            if sampler is None:
                return
            if start:
                sampler.start()
                running = True
            elif running:
                running = False
                power_result = sampler.stop()

        holder: Dict[str, Any] = {}

        def snapshot(started: bool) -> None:
            # Both ends under the governor asked for, next to the window: the end state must
            # not read the clocks of the governor restored afterwards as throttling.
            if started:
                holder["env_start"] = sysinfo.dynamic_state(parts.sysfs_root)
                on_window(started)
            else:
                on_window(started)
                holder["env_end"] = sysinfo.dynamic_state(parts.sysfs_root)

        run = run_loop(session, feeds, control, progress, snapshot, parts.max_output_bytes)
        load_end = sysinfo.load_average()
    environment = _environment(
        control, holder["env_start"], holder["env_end"], load_start, load_end, run.samples_ns
    )
    n = int(run.samples_ns.size)
    unavailable = "" if meter else parts.meters.unavailable_reason(None, settings.provider)
    wire = effective.to_wire()
    wire["providers"] = session.get_providers()
    header: Dict[str, Any] = {
        "model": sha,
        "settings": wire,
        "inputs": feeds.described,
        "latency": stats.latency_stats(run.samples_ns),
        "throughput_ips": n / run.window_s if run.window_s > 0 else None,
        "stopped_by": run.stopped_by,
        "window_s": run.window_s,
        "warmup": {"runs": run.warmup_runs, "seconds": run.warmup_s},
        "power": power.power_summary(power_result, n, run.window_s, unavailable),
        "memory": {
            "peak_rss_mb": memory.peak_mb(),
            "rss_before_mb": rss_before,
            "agent_baseline_rss_mb": parts.baseline_rss_mb,
            "session_reused": reused,
            "source": memory.source,
        },
        "environment": environment,
        "notes": control.notes,
    }
    return header, run.samples_ns
