"""A rich progress bar: trials done, best feasible accuracy, the latest measurement, and
the predictor's error against the measurements so far."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..records import TrialRecord
from .result import SearchResult
from .run import OnTrial


@contextlib.contextmanager
def progress_bar(total: int, stat: str, *, done: int = 0) -> Iterator[OnTrial]:
    bar = Progress(
        TextColumn("search"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TextColumn("{task.fields[latest]}"),
        TextColumn("{task.fields[predictor]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task = bar.add_task(
        "search", total=total, completed=done, best="best: -", latest="", predictor=""
    )

    def on_trial(rec: TrialRecord, result: SearchResult) -> None:
        if result.several:  # each target's best, as measured there
            bests = {n: result.for_target(n).best for n in result.targets}
            text = "best: " + ", ".join(
                f"{n} {100 * (b.accuracy or 0):.1f}%" if b else f"{n} -" for n, b in bests.items()
            )
        else:
            best = result.best
            text = f"best: {100 * (best.accuracy or 0):.1f}%" if best else "best: -"
        each = {n: f.latency_ms for n, f in rec.boards.items() if f.latency_ms is not None}
        if each:
            shown = ", ".join(f"{n} {v:.3f}" for n, v in each.items())
            latest = f"latest: {shown} ms {stat} ({rec.hash})"
        elif rec.latency_ms is not None:
            latest = f"latest: {rec.latency_ms:.3f} ms {stat} ({rec.hash})"
        else:
            latest = f"latest: {rec.outcome}"
        described = (
            result.forecast.predictor.describe_error() if result.forecast is not None else ""
        )
        predictor = f"predictor: {described}" if described else ""
        bar.update(
            task,
            completed=result.counts["generated"],
            best=text,
            latest=latest,
            predictor=predictor,
        )

    with bar:
        yield on_trial
