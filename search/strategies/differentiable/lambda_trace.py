"""``lambda_trace.json`` and ``lambda_trace.png``: how λ and E[latency] moved in a
differentiable search, and what each round derived and measured.

The JSON holds the run's settings (budget, aim, band, λ mode), one row per architecture
step (round, epoch, step, λ, E[latency] in table units and corrected, the aim, temperature,
task loss) and one row per round (the derived candidate, its table prediction, the
correction ratio it was derived with, and its measured latency once the board has it). It
is rewritten whole after every change, so a killed search leaves a readable file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...files import owned_dir, write_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

JSON_NAME = "lambda_trace.json"
PNG_NAME = "lambda_trace.png"


@dataclass
class LambdaTrace:
    out: Path  #: the run directory
    #: strategy, lambda mode, latency_budget_ms, aim, band, energy_budget_mj
    settings: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def json_path(self) -> Path:
        return self.out / JSON_NAME

    @property
    def png_path(self) -> Path:
        return self.out / PNG_NAME

    def to_dict(self) -> dict[str, Any]:
        return {**self.settings, "steps": self.steps, "rounds": self.rounds}

    def write(self) -> None:
        """Both files, the JSON first (the plot is drawn from the same rows), each written
        safely (files.write_file: never through a planted link)."""
        owned_dir(self.out)
        write_file(self.json_path, json.dumps(self.to_dict(), indent=1))
        plot(self.to_dict(), self.png_path)


def plot(trace: dict[str, Any], path: Path) -> None:
    """lambda_trace.png: :func:`figure` of ``trace``."""
    from ...loop.report import png

    write_file(path, png(figure(trace)))


def figure(trace: dict[str, Any]) -> Figure:
    """E[latency] (predicted from the table, corrected, ms) over λ against the architecture
    step; the aim and the budget as lines, round boundaries dashed, each round's measured
    latency as a dot. The legends sit right of the panels, clear of every point."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a board host or CI runner
    import matplotlib.pyplot as plt

    steps = trace["steps"]
    fig: Figure
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(8.5, 5.5))
    x = [s["step"] for s in steps]
    top.plot(x, [s["expected_ms"] for s in steps], label="E[latency], predicted (corrected)")
    if any(s.get("latency_aim_ms") for s in steps):
        top.step(
            x,
            [s.get("latency_aim_ms") for s in steps],
            where="post",
            color="tab:green",
            label="aim",
        )
    latency_budget_ms = trace.get("latency_budget_ms")
    if latency_budget_ms:
        top.axhline(latency_budget_ms, color="tab:red", linestyle="-", linewidth=1, label="budget")
        low, high = trace.get("band", [0.8, 1.0])
        top.axhspan(
            low * latency_budget_ms,
            high * latency_budget_ms,
            color="tab:red",
            alpha=0.08,
            label="band",
        )
    done = [r for r in trace["rounds"] if r.get("measured_ms") is not None]
    if done:
        top.plot(
            [r["end_step"] for r in done],
            [r["measured_ms"] for r in done],
            "o",
            color="black",
            label="derived, measured",
        )
    stat = trace.get("latency_stat", "")
    top.set_ylabel(f"predicted {stat} latency (ms)\n(dots: measured)")
    top.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    bottom.plot(x, [s["lambda"] for s in steps], color="tab:purple", label="λ (latency)")
    if any(s.get("lambda_energy") is not None for s in steps):
        bottom.plot(
            x, [s.get("lambda_energy") for s in steps], color="tab:orange", label="λ (energy)"
        )
    bottom.set_ylabel("λ")
    bottom.set_xlabel("architecture step")
    bottom.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for r in trace["rounds"][1:]:
        for ax in (top, bottom):
            ax.axvline(r["start_step"], color="grey", linestyle="--", linewidth=0.8)
    mode = trace.get("lambda_mode", "")
    rounds = len(trace["rounds"])
    top.set_title(f"differentiable search: λ {mode}, {rounds} round{'' if rounds == 1 else 's'}")
    fig.tight_layout()
    return fig
