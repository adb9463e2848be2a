"""Predicted against measured latency (and energy, where both were had), as a PNG for the
run directory."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import write_file
from .predictor import Observation, Predictor, PredictorError


def _panel(
    ax: Any,
    points: Sequence[tuple[float, float, float | None]],
    *,
    what: str,
    unit: str,
    title: str,
) -> None:
    """One predictor's (measured, predicted, prior) points: measured on x, predicted on y,
    the prior faint behind, the y = x line and a ±10% band; the title carries its error."""
    error = PredictorError.of([p for _, p, _ in points], [m for m, _, _ in points])
    if points:
        measured = [m for m, _, _ in points]
        priors = [(m, q) for m, _, q in points if q is not None]
        values = measured + [p for _, p, _ in points] + [q for _, q in priors]
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
            [m for m, _ in priors],
            [q for _, q in priors],
            s=14,
            marker="x",
            color="0.6",
            label="table sum (uncorrected)",
        )
        ax.scatter(
            measured,
            [p for _, p, _ in points],
            s=18,
            color="tab:blue" if unit == "ms" else "tab:orange",
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
            0.5, 0.5, "no candidate measured yet", ha="center", va="center", transform=ax.transAxes
        )
    ax.set_xlabel(f"measured {what} ({unit})")
    ax.set_ylabel(f"predicted {what} ({unit})")
    summary = error.describe() if error is not None else "no measurement"
    ax.set_title(f"{title}\n{summary}", fontsize=10)


def plot_predictions(
    predictor_or_observations: Predictor | Sequence[Observation],
    path: Path,
    *,
    stat: str,
    board: str,
) -> None:
    """The latency predictor's panel, and beside it the energy predictor's where some
    candidate has both a predicted and a measured energy (each prediction made before its
    measurement). Writes the file even with no measurement (and says so on it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    obs = (
        predictor_or_observations.observations
        if isinstance(predictor_or_observations, Predictor)
        else list(predictor_or_observations)
    )
    latency = [(o.measured_ms, o.predicted_ms, o.prior_ms) for o in obs]
    energy = [
        (o.measured_energy_mj, o.predicted_energy_mj, o.prior_energy_mj)
        for o in obs
        if o.measured_energy_mj is not None and o.predicted_energy_mj is not None
    ]
    panels = 2 if energy else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 5.2), dpi=110, squeeze=False)
    try:
        _panel(
            axes[0][0],
            latency,
            what=f"{stat} latency",
            unit="ms",
            title=f"{board}: latency predictor",
        )
        if energy:
            _panel(
                axes[0][1],
                energy,
                what="energy per inference",
                unit="mJ",
                title=f"{board}: energy predictor",
            )
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    write_file(Path(path), buf.getvalue())  # never through a planted link
