"""What a search knows when it is done (or so far): every trial's record, the counts, the
feasible Pareto front (over energy too when it is an objective), and, per target, the
board that measured it.

A search over several targets keeps one record per trial with each target's figures
(``TrialRecord.boards``); :meth:`SearchResult.for_target` is the result a one-target search
on that target would have given (its front, its best, its counts), which every report uses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hwnas_bench import BoardFacts, Measurement

from .. import records
from ..build import CandidateNet
from ..onnx_export import from_onnx
from ..records import TrialRecord
from ..settings import SearchSettings
from ..space import Candidate
from ..training.data import Split, labels, to_nchw
from ..training.train import evaluate as evaluate_net

if TYPE_CHECKING:
    from .final import FinalModel
    from .forecast import Forecast
    from .providers import ProviderChoice


def data_fingerprint(split: Split) -> str:
    h = hashlib.sha256()
    for arr in (split.x_train, split.y_train, split.x_val, split.y_val):
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


@dataclass
class TargetState:
    """One target of the search: the board leased for it and what was learnt of it."""

    board: str = ""  #: the board's name (a farm target may lease one of several)
    facts: BoardFacts = field(default_factory=BoardFacts)  #: its hello
    forecast: Forecast | None = None  #: its measured table and predictor, if used
    provider: ProviderChoice | None = None  #: the execution provider and how it was chosen
    #: its best retrained on train+validation and measured again (final.py): what ships;
    #: None with ``final_epochs`` 0 or no best here
    final: FinalModel | None = None


@dataclass
class SearchResult:
    """The whole run: every trial's record, the counts, the feasible Pareto front."""

    out: Path
    settings: SearchSettings
    trials: list[TrialRecord] = field(default_factory=list)
    board: str = ""
    facts: BoardFacts = field(default_factory=BoardFacts)  #: the (first) target's hello
    #: the measured table and predictor, when the search used them
    forecast: Forecast | None = None
    #: target name -> its state, in the order given (one entry for a one-target search)
    targets: dict[str, TargetState] = field(default_factory=dict)
    #: a resume found the run finished (no trial to go): its reports are kept as they are
    finished_before: bool = False

    @property
    def several(self) -> bool:
        """True for a search over several targets (records hold each one's figures)."""
        return len(self.targets) > 1

    def for_target(self, name: str) -> SearchResult:
        """The result as a one-target search on ``name`` would see it."""
        if not self.several:
            return self
        state = self.targets[name]
        return replace(
            self,
            trials=[r.view(name) for r in self.trials],
            board=state.board,
            facts=state.facts,
            forecast=state.forecast,
            targets={name: state},
        )

    @property
    def counts(self) -> dict[str, int]:
        return records.count(self.trials)

    @property
    def pareto(self) -> list[TrialRecord]:
        return records.pareto(self.trials, energy=self.settings.energy_objective)

    @property
    def best(self) -> TrialRecord | None:
        return records.best(self.trials)

    def smallest_latency(self) -> float | None:
        lat = [r.latency_ms for r in self.trials if r.outcome == records.MEASURED and r.latency_ms]
        return min(lat) if lat else None


class SearchedModel:
    """A trained, measured candidate: the search's answer."""

    def __init__(
        self, onnx: bytes, record: TrialRecord, *, final: FinalModel | None = None
    ) -> None:
        #: the ONNX bytes that were measured (NCHW float32 input, batch 1): the retrained
        #: model's when there is a ``final`` (the search's trial otherwise)
        self.onnx = final.onnx if final is not None else onnx
        self.record = record
        self.final = final  #: the retraining, None when the searched model ships
        self.module: CandidateNet = from_onnx(self.onnx)  #: the torch module, trained weights
        self.candidate: Candidate = self.module.candidate
        #: measured on the target (the retrained model's own measurement when retrained)
        self.measurement: Measurement | None = (
            final.measurement if final is not None else record.measurement
        )
        self.accuracy = record.accuracy  #: validation accuracy during the search (the proxy)

    def _x(self, x: Any) -> np.ndarray:
        from ..blocks.candidate import BlockCandidate

        if isinstance(self.candidate, BlockCandidate):  # (L, C) signals too
            from ..blocks.data import to_channels_first

            return to_channels_first(x, self.candidate.input_shape)
        return to_nchw(x, self.candidate.input_shape)

    def evaluate(self, x: Any, y: Any) -> tuple[float, float]:
        """(mean cross-entropy loss, accuracy in [0, 1]) on data in the search's layout."""
        return evaluate_net(self.module, self._x(x), labels(y))

    def predict(self, x: Any) -> np.ndarray:
        """Class indices for the samples of ``x``."""
        self.module.eval()
        with torch.no_grad():
            logits = self.module(torch.from_numpy(self._x(x)))
        return np.asarray(logits.argmax(1).numpy())

    def save(self, path: str | Path) -> Path:
        """Write the ONNX model (the one measured) to ``path``; a directory gets
        ``<candidate hash>.onnx`` inside it."""
        out = Path(path)
        if out.is_dir():
            out = out / f"{self.candidate.hash}.onnx"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(self.onnx)
        return out

    def __repr__(self) -> str:
        lat = self.record.latency_ms
        enc = self.candidate.encode()
        return f"SearchedModel({enc!r}, accuracy={self.accuracy}, latency_ms={lat})"
