"""The winner retrained before it ships: each board's best candidate trained again from
scratch (the search's seed and recipe) on the training and validation parts together for
``TrainSettings.final_epochs`` epochs, exported, and measured again on that board. The
search's own (proxy) accuracy stays on the record; the retrained model's test accuracy is
judged on the held-out test set by whoever has it (the Searcher, for the card)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hwnas_bench import HwnasError, Measurement

from ..measure import Board
from ..onnx_export import to_onnx
from ..records import TrialRecord
from ..settings import MeasuredFigures, SearchSettings
from ..space import Candidate
from ..training.data import Split
from ..training.final import retrain


@dataclass(frozen=True)
class FinalModel:
    """One board's best as it ships after the retraining."""

    candidate_hash: str  #: the candidate retrained (the board's best's)
    onnx: bytes  #: the retrained model's ONNX bytes
    measurement: Measurement  #: of these bytes, on the board (the card's proof)
    epochs: int  #: of the retraining
    samples: int  #: trained on: the training and validation parts together
    train_s: float  #: the retraining's seconds (the export not counted)
    proxy_accuracy: float | None  #: the search's validation accuracy of the candidate
    #: the measured budgets the retrained model is not within (its own measurement: the
    #: same architecture, so only noise moves it; said, never hidden)
    violations: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The card's ``final`` (and the summary's): the retraining and the proxy accuracy."""
        return {
            "candidate_hash": self.candidate_hash,
            "epochs": self.epochs,
            "samples": self.samples,
            "train_s": round(self.train_s, 3),
            "proxy_accuracy": self.proxy_accuracy,
            "model_sha256": self.measurement.model.sha256,
            "violations": list(self.violations),
        }


def retrain_winners(
    bests: Mapping[str, TrialRecord],
    data: Split,
    settings: SearchSettings,
    boards: Mapping[str, Board],
    *,
    log: Callable[[str], None] | None = None,
) -> dict[str, FinalModel]:
    """Target name -> its best (``bests``) retrained and measured again on that board. A
    candidate that is the best of several boards is trained once and measured on each. A
    board that fails the measurement is left out (its searched model ships; ``log`` is told
    why): the search's results are all there by now."""
    epochs = settings.train.final_epochs_run
    if epochs < 1:
        return {}
    trained: dict[str, tuple[bytes, float, int]] = {}
    out: dict[str, FinalModel] = {}
    for name, best in bests.items():
        if best.hash not in trained:
            candidate = Candidate.decode(best.candidate)
            start = time.perf_counter()
            net, _ = retrain(candidate, data, settings.train, seed=settings.seed)
            seconds = time.perf_counter() - start
            trained[best.hash] = (to_onnx(net), seconds, len(data.x_train) + len(data.x_val))
        model, seconds, samples = trained[best.hash]
        try:  # the search's rule: more rounds while they straddle the latency budget
            decided = boards[name].measure_decided(
                model,
                settings.budgets.latency_ms,
                settings.latency_stat,
                name=f"final {best.number} {best.hash}",
            )
        except HwnasError as exc:
            if log is not None:
                log(f"{name}: the retrained model was not measured ({exc}); the searched one ships")
            continue
        measurement = decided.measurement
        figures = MeasuredFigures.of(measurement, settings.latency_stat, decided.verdict)
        out[name] = FinalModel(
            best.hash,
            model,
            measurement,
            epochs,
            samples,
            seconds,
            best.accuracy,
            tuple(v.reason for v in settings.budgets.violations(figures)),
        )
    return out
