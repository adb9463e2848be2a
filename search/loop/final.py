"""The winner retrained before it ships: each board's best candidate trained again from
scratch (the search's seed and recipe) on the training and validation parts together for
``TrainSettings.final_epochs`` epochs, exported, and measured again on that board. The
search's own (proxy) accuracy stays on the record; the retrained model's test accuracy is
judged on the held-out test set by whoever has it (the Searcher, for the card)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas_bench import HwnasError, Measurement

from ..files import MAX_MODEL_BYTES, owned_dir, read_present, write_file
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
    keep: Path | None = None,
) -> dict[str, FinalModel]:
    """Target name -> its best (``bests``) retrained and measured again on that board. A
    candidate that is the best of several boards is trained once and measured on each. A
    board that fails the measurement is left out (its searched model ships; ``log`` is told
    why): the search's results are all there by now.

    ``keep``: a folder (the run's ``final/``) where each retrained model is kept, so a
    resumed run whose best is unchanged measures it again without training it again (a
    resume has the same data, seed and recipe: search.json holds them)."""
    epochs = settings.train.final_epochs_run
    if epochs < 1:
        return {}
    trained: dict[str, tuple[bytes, float, int]] = {}
    out: dict[str, FinalModel] = {}
    for name, best in bests.items():
        if best.hash not in trained:
            kept = _kept(keep, best.hash, epochs)
            if kept is None:
                candidate = Candidate.decode(best.candidate)
                start = time.perf_counter()
                net, _ = retrain(candidate, data, settings.train, seed=settings.seed)
                seconds = time.perf_counter() - start
                kept = (to_onnx(net), seconds, len(data.x_train) + len(data.x_val))
                _keep(keep, best.hash, epochs, kept)
            trained[best.hash] = kept
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


def _kept_paths(folder: Path, candidate_hash: str, epochs: int) -> tuple[Path, Path]:
    stem = folder / f"{candidate_hash}-e{epochs}"
    return stem.with_suffix(".onnx"), stem.with_suffix(".json")


def _kept(folder: Path | None, candidate_hash: str, epochs: int) -> tuple[bytes, float, int] | None:
    """The model a run retrained before (bytes, its training seconds, samples), if kept."""
    if folder is None:
        return None
    model_path, info_path = _kept_paths(folder, candidate_hash, epochs)
    info_bytes = read_present(info_path, 4096)
    model = read_present(model_path, MAX_MODEL_BYTES) if info_bytes is not None else None
    if info_bytes is None or model is None:
        return None
    try:
        info = json.loads(info_bytes)
        return model, float(info["train_s"]), int(info["samples"])
    except (ValueError, KeyError, TypeError):  # a file cut short by a kill: train again
        return None


def _keep(
    folder: Path | None, candidate_hash: str, epochs: int, kept: tuple[bytes, float, int]
) -> None:
    if folder is None:
        return
    owned_dir(folder)
    model_path, info_path = _kept_paths(folder, candidate_hash, epochs)
    write_file(model_path, kept[0])  # the model first: the info says it is complete
    write_file(info_path, json.dumps({"train_s": kept[1], "samples": kept[2]}) + "\n")
