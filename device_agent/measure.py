"""One benchmark, start to finish: the reply header of a ``bench`` request and its samples."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import numpy as np

from . import inputs, power, stats, sysinfo
from .errors import AgentError
from .protocol import BenchSettings, ErrorCode
from .runner import LoopProgress, timed_loop

if TYPE_CHECKING:
    from .handlers import Handlers


def _meter(handlers: Handlers, settings: BenchSettings) -> Optional[power.PowerMeter]:
    meter = handlers.power.select(settings.power_meter)
    if settings.power_meter is not None and meter is None:
        found = [m.source for m in handlers.power.meters] or ["none"]
        raise AgentError(
            ErrorCode.BAD_REQUEST,
            f"power meter {settings.power_meter!r} not found; the board has: {', '.join(found)}",
        )
    return meter


def bench_once(
    handlers: Handlers, sha: str, path: Path, settings: BenchSettings, progress: LoopProgress
) -> Tuple[Dict[str, Any], np.ndarray]:
    meter = _meter(handlers, settings)
    memory = handlers.memory
    handlers.sessions.prepare(sha, settings)  # the previous model must not count here
    memory.reset_peak()
    rss_before = memory.rss_mb()
    progress.stage = "loading"
    session, reused = handlers.sessions.get(sha, path, settings)
    feeds = handlers.feeds(session, settings)
    env_start = sysinfo.dynamic_state()

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

    run = timed_loop(session, feeds, settings, progress, on_window)
    env_end = sysinfo.dynamic_state()
    latency = stats.latency_stats(run.samples_ns)
    drift = stats.drift(run.samples_ns)
    n = int(run.samples_ns.size)
    unavailable = handlers.power.unavailable_reason() if meter is None else ""
    effective = settings.to_wire()
    effective["providers"] = session.get_providers()
    header: Dict[str, Any] = {
        "model": sha,
        "settings": effective,
        "inputs": inputs.describe(feeds),
        "latency": latency,
        "throughput_ips": n / run.window_s if run.window_s > 0 else None,
        "stopped_by": run.stopped_by,
        "window_s": run.window_s,
        "warmup": {"runs": run.warmup_runs, "seconds": run.warmup_s},
        "power": power.power_summary(power_result, n, run.window_s, unavailable),
        "memory": {
            "peak_rss_mb": memory.peak_mb(),
            "rss_before_mb": rss_before,
            "agent_baseline_rss_mb": handlers.baseline_rss_mb,
            "session_reused": reused,
            "source": memory.source,
        },
        "environment": {
            "governor": env_start.get("governor"),
            "cpu_freq_mhz_start": env_start.get("cpu_freq_mhz"),
            "cpu_freq_mhz_end": env_end.get("cpu_freq_mhz"),
            "temperature_c_start": env_start.get("temperature_c"),
            "temperature_c_end": env_end.get("temperature_c"),
            "throttled": sysinfo.throttle_check(env_start, env_end),
            "drift": drift["detected"],
            "drift_slowdown_pct": drift["slowdown_pct"],
            "drift_p_value": drift["p_value"],
        },
    }
    return header, run.samples_ns
