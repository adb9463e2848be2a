"""A rich progress bar: trials done, best feasible accuracy, the latest measurement."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .records import TrialRecord
from .run import OnTrial, SearchResult


@contextlib.contextmanager
def progress_bar(total: int, stat: str, *, done: int = 0) -> Iterator[OnTrial]:
    bar = Progress(
        TextColumn("search"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"),
        TextColumn("{task.fields[latest]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task = bar.add_task("search", total=total, completed=done, best="best: -", latest="")

    def on_trial(rec: TrialRecord, result: SearchResult) -> None:
        best = result.best
        text = f"best: {100 * (best.accuracy or 0):.1f}%" if best else "best: -"
        if rec.latency_ms is not None:
            latest = f"latest: {rec.latency_ms:.3f} ms {stat} ({rec.hash})"
        else:
            latest = f"latest: {rec.outcome}"
        bar.update(task, completed=result.counts["generated"], best=text, latest=latest)

    with bar:
        yield on_trial
