"""The predictor as the search uses it: the table opened for the board, every candidate
predicted before it is trained, those predicted far over a budget skipped, each whole-model
measurement fed back to the correction, and the log replayed on a resume.

A prediction is stored next to the candidate (``TrialRecord.predicted``, the trial's
``predicted`` attribute, the measurement log's ``predicted``) and never in a measured field:
``latency_ms`` and ``energy_mj`` are always the board's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import records
from ..measure import Board
from ..predict import candidate_ops
from ..predict.predictor import Prediction, Predictor
from ..predict.table import LatencyTable
from ..records import TrialRecord
from ..settings import STATS, SearchSettings
from ..space import Candidate


class Forecast:
    """The run's latency table and predictor, and the rule that skips a candidate."""

    def __init__(self, board: Board, settings: SearchSettings, out: Path) -> None:
        self.board, self.settings = board, settings
        self.table = LatencyTable.for_board(board, settings.latency_stat, out)
        self.predictor = Predictor(self.table)

    def replay(self, log: Iterable[Mapping[str, Any]]) -> None:
        """Feed back the measurements a run already made (a resume measures none again)."""
        for entry in log:
            predicted = entry.get("predicted")
            measured = (entry.get("measurement") or {}).get("latency") or {}
            if not isinstance(predicted, dict) or "candidate" not in entry:
                continue
            value = measured.get(STATS[self.settings.latency_stat])
            if not isinstance(value, (int, float)):
                continue
            power = (entry.get("measurement") or {}).get("power") or {}
            energy = power.get("energy_mj")
            self.predictor.observe(
                Prediction.from_dict(predicted),
                Candidate.decode(str(entry["candidate"])),
                float(value),
                float(energy) if isinstance(energy, (int, float)) else None,
                refit=False,
            )
        self.predictor.refit()  # once, not once per logged measurement

    def predict(self, candidate: Candidate) -> Prediction:
        """Measure the layers the table lacks (board errors propagate), then predict."""
        self.table.ensure(candidate_ops(candidate), self.board)
        return self.predictor.predict(candidate)

    def over_budget(self, prediction: Prediction) -> str | None:
        """Why a candidate is not worth training, or None. Only with ``predictor`` on: a
        predicted figure over its budget by more than the predictor's own error (a figure
        the table cannot predict skips nothing: the measurement decides)."""
        if not self.settings.predictor:
            return None
        budgets = self.settings.budgets
        # each figure by its own logged error: energy by energy's, never latency's
        for v, margin in self.predictor.over_budgets(prediction, budgets):  # latency first
            latency = v.budget == "latency_ms"
            what = f"{budgets.stat} {v.value:.3f} ms" if latency else f"energy {v.value:.3f} mJ"
            return (
                f"predicted {what} > budget {v.limit:g} {'ms' if latency else 'mJ'} + the "
                f"predictor's {'latency' if latency else 'energy'} error ({100 * margin:.0f}%); "
                "not trained, not measured"
            )
        return None

    def observe(self, rec: TrialRecord, candidate: Candidate) -> None:
        if rec.predicted is None or rec.latency_ms is None or rec.outcome != records.MEASURED:
            return
        self.predictor.observe(rec.predicted, candidate, rec.latency_ms, rec.energy_mj)

    def describe(self) -> str:
        error = self.predictor.error()
        return f"predictor: {error.describe()}" if error is not None else "predictor: -"
