"""Per-node times from onnxruntime's profiler, over the timed iterations only.

onnxruntime cannot start profiling after a session was created, so the trace holds the
warm-up runs too. They are left out by time: only node events at or after the start of the
first timed ``model_run`` count (the events of one run lie within its ``model_run``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np


def _shapes(value: Any) -> List[Any]:
    """``[{"float": [1, 3, 64, 64]}, ...]`` (onnxruntime's trace args) -> ``[[1, 3, 64, 64]]``."""
    if not isinstance(value, list):
        return []
    out: List[Any] = []
    for item in value:
        if isinstance(item, dict) and len(item) == 1:
            out.append(next(iter(item.values())))
        else:
            out.append(item)
    return out


def profile_nodes(trace: List[Dict[str, Any]], warmup_runs: int = 0) -> Dict[str, Any]:
    """Aggregate a Chrome-trace profile into per-node times, skipping ``warmup_runs`` runs."""
    model_runs = sorted(
        (e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: int(e.get("ts", 0)),
    )
    timed = model_runs[warmup_runs:]
    start = int(timed[0].get("ts", 0)) if timed else None
    nodes: Dict[Tuple[str, str, str], List[int]] = {}
    shapes: Dict[Tuple[str, str, str], Tuple[List[Any], List[Any]]] = {}
    for event in trace:
        if start is None or int(event.get("ts", 0)) < start:
            continue
        if event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time"):
            args = event.get("args", {})
            name = str(event["name"])[: -len("_kernel_time")]
            key = (name, str(args.get("op_name", "")), str(args.get("provider", "")))
            nodes.setdefault(key, []).append(int(event.get("dur", 0)))
            if key not in shapes:
                shapes[key] = (
                    _shapes(args.get("input_type_shape")),
                    _shapes(args.get("output_type_shape")),
                )
    total = sum(sum(d) for d in nodes.values()) or 1
    rows: List[Dict[str, Any]] = []
    for key, durs in nodes.items():
        name, op, provider = key
        median, p95 = np.percentile(np.asarray(durs, dtype=np.float64), [50, 95])
        rows.append(
            {
                "name": name,
                "op_type": op,
                "provider": provider,
                "calls": len(durs),
                "total_us": sum(durs),
                "mean_us": sum(durs) / len(durs),
                "median_us": float(median),
                "p95_us": float(p95),
                "share": sum(durs) / total,
                "input_shapes": shapes[key][0],
                "output_shapes": shapes[key][1],
            }
        )
    rows.sort(key=lambda r: int(r["total_us"]), reverse=True)
    durations = [int(e.get("dur", 0)) for e in timed]
    return {
        "runs": len(timed),
        "model_run_mean_us": (sum(durations) / len(durations)) if durations else None,
        "warmup_runs_included": False,
        "warmup_runs_excluded": len(model_runs) - len(timed),
        "nodes": rows,
    }
