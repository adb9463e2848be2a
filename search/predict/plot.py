"""Predicted against measured latency, as a PNG for the run directory."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from ..files import write_file
from .predictor import Observation, Predictor, PredictorError


def plot_predictions(
    predictor_or_observations: Predictor | Sequence[Observation],
    path: Path,
    *,
    stat: str,
    board: str,
) -> None:
    """Measured on x, predicted on y (each prediction made before its measurement), the
    table's prior faint behind, the y = x line and a ±10% band; the title carries the error.
    Writes the file even with no measurement (and says so on it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = (
        predictor_or_observations.observations
        if isinstance(predictor_or_observations, Predictor)
        else list(predictor_or_observations)
    )
    error = PredictorError.of([o.predicted_ms for o in obs], [o.measured_ms for o in obs])
    fig, ax = plt.subplots(figsize=(6, 5.2), dpi=110)
    try:
        if obs:
            measured = [o.measured_ms for o in obs]
            values = measured + [o.predicted_ms for o in obs] + [o.prior_ms for o in obs]
            lo, hi = min(values) * 0.85, max(values) * 1.15
            line = [lo, hi]
            ax.fill_between(
                line,
                [lo * 0.9, hi * 0.9],
                [lo * 1.1, hi * 1.1],
                color="tab:green",
                alpha=0.15,
                label="±10%",
            )
            ax.plot(line, line, color="tab:green", lw=1, label="predicted = measured")
            ax.scatter(
                measured,
                [o.prior_ms for o in obs],
                s=14,
                marker="x",
                color="0.6",
                label="table sum (uncorrected)",
            )
            ax.scatter(
                measured,
                [o.predicted_ms for o in obs],
                s=18,
                color="tab:blue",
                label="predicted before measuring",
            )
            if hi / lo > 20:
                ax.set_xscale("log")
                ax.set_yscale("log")
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.legend(loc="upper left", fontsize=8)
        else:
            ax.text(
                0.5,
                0.5,
                "no candidate measured yet",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        ax.set_xlabel(f"measured {stat} latency (ms)")
        ax.set_ylabel(f"predicted {stat} latency (ms)")
        summary = error.describe() if error is not None else "no measurement"
        ax.set_title(f"{board}: latency predictor\n{summary}", fontsize=10)
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    write_file(Path(path), buf.getvalue())  # never through a planted link
