"""What a search keeps of each trial, how it is counted, and the Pareto front.

A trial's record lives in the Optuna study (its user attributes: candidate, outcome, cost,
accuracy) and, for a measured one, its full ``Measurement`` in ``measurements.jsonl``.
Counts are derived from the study every time, so they survive a resume.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hwnas_bench import Measurement, MeasurementFormatError

from .cost import Cost
from .errors import SettingsError
from .files import open_append, read_present
from .measure.confidence import Verdict
from .predict.predictor import Prediction

#: Trial outcomes, as stored in the study (``user_attrs["outcome"]``).
MEASURED = "measured"
#: a candidate already measured in this run, proposed again: not measured again, its figures
#: reused; does not count against ``trials`` (up to ``trials`` repeats)
DUPLICATE = "duplicate"
INVALID = "invalid"  #: shapes do not work (spatial size below 1)
PRUNED_TRAINING = "pruned_training"  #: a hopeless training run, stopped by the pruner
FAILED = "failed"  #: training or the board failed; ``reason`` says how
INTERRUPTED = "interrupted"  #: the process died during the trial; redone on resume
#: not trained: the predictor put it over a budget by more than its own measured error
#: (its figures are predictions, labelled so; it is never on the front)
PREDICTED_OVER = "predicted_over_budget"
#: pruned by a hardware limit before training: ``pruned_<limit>``
LIMITS = ("profile_memory", "memory", "flops", "params")
PRUNED_PROFILE_MEMORY = "pruned_profile_memory"
#: a several-target trial's outcomes after training, when the targets' own may differ
TARGET_OUTCOMES = (MEASURED, FAILED, PRUNED_PROFILE_MEMORY)


def finite(value: Any) -> float | None:
    """A figure read back from a study: a finite number, else None (a study written by
    another version, or by hand, must not crash a report)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def read_prediction(value: Any) -> Prediction | None:
    """A stored prediction (``Prediction.to_dict()``), or None where it is not one."""
    if not isinstance(value, dict):
        return None
    try:
        return Prediction.from_dict(value)
    except ValueError:
        return None  # another version's, or written by hand: not a prediction to trust


def read_cost(value: Any) -> Cost | None:
    """A stored cost (``Cost.to_dict()``), or None where it is not one."""
    if not isinstance(value, dict):
        return None
    try:
        return Cost.from_dict(value)
    except ValueError:
        return None


def _verdict_attrs(verdict: Verdict | None) -> dict[str, Any] | None:
    return verdict.to_dict() if verdict is not None else None


def _prediction_attrs(prediction: Prediction | None) -> dict[str, Any] | None:
    return prediction.to_dict() if prediction is not None else None


@dataclass
class BoardFigures:
    """One target's figures for a candidate, in a search over several targets."""

    latency_ms: float | None = None  #: the chosen statistic, as measured on this target
    energy_mj: float | None = None
    feasible: bool | None = None  #: within every budget on this target, as measured
    predicted: Prediction | None = None  #: this target's predictor, before measuring
    measurement: Measurement | None = None
    #: what happened on this target once the candidate was trained: measured, failed (the
    #: board's error in ``reason``) or pruned_profile_memory (too big for this board only)
    outcome: str | None = None
    reason: str | None = None
    #: the side of the latency budget the measured rounds put it on (confidence.py)
    latency_verdict: Verdict | None = None

    def attrs(self) -> dict[str, Any]:
        out = {
            "latency_ms": self.latency_ms,
            "energy_mj": self.energy_mj,
            "feasible": self.feasible,
            "predicted": _prediction_attrs(self.predicted),
            "outcome": self.outcome,
            "reason": self.reason,
            "latency_verdict": _verdict_attrs(self.latency_verdict),
        }
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], measurement: Measurement | None) -> BoardFigures:
        return cls(
            latency_ms=finite(attrs.get("latency_ms")),
            energy_mj=finite(attrs.get("energy_mj")),
            feasible=_flag(attrs.get("feasible")),
            predicted=read_prediction(attrs.get("predicted")),
            measurement=measurement,
            outcome=_text(attrs.get("outcome")),
            reason=_text(attrs.get("reason")),
            latency_verdict=Verdict.from_dict(attrs.get("latency_verdict")),
        )


@dataclass
class TrialRecord:
    number: int
    candidate: str  #: the canonical encoding
    hash: str
    outcome: str
    reason: str | None = None
    cost: Cost | None = None  #: None until the candidate's shapes are known to work
    accuracy: float | None = None  #: validation accuracy, a fraction
    val_loss: float | None = None
    latency_ms: float | None = None  #: the chosen statistic, as measured
    energy_mj: float | None = None  #: as measured; None without a power meter
    feasible: bool | None = None  #: within every budget, as measured
    train_s: float | None = None
    export_s: float | None = None  #: candidate + weights -> ONNX bytes
    #: the predictor's figures for this candidate, made before any measurement of it
    #: (stored as ``Prediction.to_dict()``); never measured
    predicted: Prediction | None = None
    measurement: Measurement | None = None
    #: the side of the latency budget the measured rounds put it on, with every round's
    #: figure (confidence.py); None without a latency budget, and in older records
    latency_verdict: Verdict | None = None
    #: a search over several targets: each target's figures (the fields above are the
    #: first target's); empty for one target
    boards: dict[str, BoardFigures] = field(default_factory=dict)

    def view(self, target: str) -> TrialRecord:
        """This record as a one-target search on ``target`` would have it: that target's
        figures in the measured fields (none where it was not measured there)."""
        if not self.boards:
            return self
        f = self.boards.get(target, BoardFigures())
        # once trained, what happened on this target is its own (another board's failure
        # is not this one's); before that (pruned, repeated...) the trial's outcome holds
        own = f.outcome is not None and self.outcome in TARGET_OUTCOMES
        return replace(
            self,
            outcome=f.outcome if own and f.outcome else self.outcome,
            reason=f.reason if own else self.reason,
            latency_ms=f.latency_ms,
            energy_mj=f.energy_mj,
            feasible=f.feasible,
            predicted=f.predicted,
            measurement=f.measurement,
            latency_verdict=f.latency_verdict,
            boards={},
        )

    @property
    def predicted_latency_ms(self) -> float | None:
        return self.predicted.latency_ms if self.predicted is not None else None

    @property
    def cost_figures(self) -> dict[str, Any]:
        """The cost as stored (params, flops, peak_activation_bytes, memory_mb); {} for none."""
        return self.cost.to_dict() if self.cost is not None else {}

    @property
    def measured(self) -> bool:
        return self.outcome in (MEASURED, DUPLICATE)

    def attrs(self) -> dict[str, Any]:
        """The study's user attributes for this record (no Measurement: that is JSON lines)."""
        out = {
            "candidate": self.candidate,
            "hash": self.hash,
            "outcome": self.outcome,
            "reason": self.reason,
            "cost": self.cost_figures,
            "accuracy": self.accuracy,
            "val_loss": self.val_loss,
            "latency_ms": self.latency_ms,
            "energy_mj": self.energy_mj,
            "feasible": self.feasible,
            "train_s": self.train_s,
            "export_s": self.export_s,
            "predicted": _prediction_attrs(self.predicted),
            "latency_verdict": _verdict_attrs(self.latency_verdict),
            "boards": {name: f.attrs() for name, f in self.boards.items()} or None,
        }
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_attrs(
        cls,
        number: int,
        attrs: Mapping[str, Any],
        measurement: Measurement | None,
        board_measurements: Mapping[str, Measurement | None] | None = None,
    ) -> TrialRecord:
        """``board_measurements``: a several-target search's measurement of each target
        (the first target's is also ``measurement``)."""
        measured = attrs.get("outcome") in (MEASURED, DUPLICATE)
        raw = attrs.get("boards")
        boards_attr: dict[str, Any] = raw if isinstance(raw, dict) else {}
        boards = {}
        for name, figures in boards_attr.items():
            figures = figures if isinstance(figures, dict) else {}
            own = measured or figures.get("outcome") == MEASURED  # another board failed
            m = (board_measurements or {}).get(str(name)) if own else None
            boards[str(name)] = BoardFigures.from_attrs(figures, m)
        return cls(
            number=number,
            candidate=str(attrs.get("candidate", "")),
            hash=str(attrs.get("hash", "")),
            outcome=_text(attrs.get("outcome")) or INTERRUPTED,
            reason=_text(attrs.get("reason")),
            cost=read_cost(attrs.get("cost")),
            accuracy=finite(attrs.get("accuracy")),
            val_loss=finite(attrs.get("val_loss")),
            latency_ms=finite(attrs.get("latency_ms")),
            energy_mj=finite(attrs.get("energy_mj")),
            feasible=_flag(attrs.get("feasible")),
            train_s=finite(attrs.get("train_s")),
            export_s=finite(attrs.get("export_s")),
            predicted=read_prediction(attrs.get("predicted")),
            measurement=measurement if measured else None,
            latency_verdict=Verdict.from_dict(attrs.get("latency_verdict")),
            boards=boards,
        )

    def to_dict(self) -> dict[str, Any]:
        out = {"number": self.number, **self.attrs()}
        if self.measurement is not None:
            out["measurement"] = self.measurement.to_dict()
        for name, f in self.boards.items():
            if f.measurement is not None:
                out["boards"][name]["measurement"] = f.measurement.to_dict()
        return out


def count(records: Iterable[TrialRecord]) -> dict[str, int]:
    """generated, invalid, pruned_<limit>, pruned_training, predicted_over_budget, trained,
    measured, duplicates, infeasible, failed, interrupted, and pruned (all that were not
    trained or not measured for a reason)."""
    records = list(records)
    outcomes = Counter(r.outcome for r in records)
    counts = {
        "generated": sum(1 for r in records if r.outcome not in (INTERRUPTED, DUPLICATE)),
        "invalid": outcomes[INVALID],
        **{f"pruned_{limit}": outcomes[f"pruned_{limit}"] for limit in LIMITS},
        "pruned_training": outcomes[PRUNED_TRAINING],
        "predicted_over_budget": outcomes[PREDICTED_OVER],
        "trained": sum(1 for r in records if r.train_s is not None),
        "measured": outcomes[MEASURED],
        "duplicates": outcomes[DUPLICATE],
        "infeasible": sum(1 for r in records if r.outcome == MEASURED and r.feasible is False),
        "failed": outcomes[FAILED],
        "interrupted": outcomes[INTERRUPTED],
    }
    counts["pruned"] = (
        counts["invalid"]
        + sum(counts[f"pruned_{x}"] for x in LIMITS)
        + counts["pruned_training"]
        + counts["predicted_over_budget"]
    )
    return counts


def pareto(
    records: Iterable[TrialRecord], *, feasible_only: bool = True, energy: bool = False
) -> list[TrialRecord]:
    """Non-dominated measured candidates (accuracy up, latency down and, with ``energy``,
    energy down), one per candidate, sorted by latency. With ``energy`` a candidate without
    an energy figure is never on the front (it is not known to use little)."""
    pool: dict[str, TrialRecord] = {}
    for r in records:
        if r.outcome != MEASURED or r.accuracy is None or r.latency_ms is None:
            continue
        if feasible_only and r.feasible is False:
            continue
        if energy and finite(r.energy_mj) is None:
            continue
        pool.setdefault(r.hash, r)
    items = list(pool.values())
    points = {id(r): _point(r, energy) for r in items}
    front = [r for r in items if not any(_dominates(points[id(o)], points[id(r)]) for o in items)]
    return sorted(front, key=lambda r: (r.latency_ms, -(r.accuracy or 0.0)))


def _point(r: TrialRecord, energy: bool) -> tuple[float, ...]:
    """A front member's figures, each to be minimised."""
    assert r.accuracy is not None
    assert r.latency_ms is not None
    return (-r.accuracy, r.latency_ms) + ((float(r.energy_mj or 0.0),) if energy else ())


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """``a`` is no worse than ``b`` on every figure and better on one."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def best(records: Iterable[TrialRecord]) -> TrialRecord | None:
    """The most accurate feasible measured candidate; ties go to the faster as measured."""
    pool = [
        r
        for r in records
        if r.outcome == MEASURED and r.feasible is not False and r.accuracy is not None
    ]
    if not pool:
        return None
    return min(pool, key=lambda r: (-(r.accuracy or 0.0), r.latency_ms or float("inf"), r.number))


class MeasurementLog:
    """``measurements.jsonl``: one line per device measurement, appended and flushed at once
    (a killed search loses no measurement it made). A search over several targets writes
    one line per target, with its ``target``; a one-target search's lines have none.

    A line that is not JSON (cut short by a kill) is skipped: that measurement is redone.
    A JSON line that is not a measurement record is a SettingsError naming the line: the
    file is not this search's, and a resume must not trust it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[tuple[str, str | None], dict[str, Any]] = {}
        #: the file ends mid-line (a kill): the next append starts a new line first
        self._cut = False
        raw = read_present(path)
        if raw is None:
            return
        self._cut = bool(raw) and not raw.endswith(b"\n")
        for number, line in enumerate(raw.splitlines(), 1):
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                continue  # a line cut short by a kill: that measurement is redone
            key = _entry_key(entry)
            if key is None:
                raise SettingsError(
                    f"{path} line {number} is not a measurement record of a search; "
                    "remove the line (or the file) and resume again"
                )
            self._entries[key] = entry

    def entries(self, target: str | None = None) -> list[dict[str, Any]]:
        """The latest entry of each candidate measured on ``target`` (None: one target)."""
        return [e for (_, t), e in self._entries.items() if t == target]

    def get(
        self, candidate_hash: str, target: str | None = None
    ) -> tuple[dict[str, Any], Measurement] | None:
        entry = self._entries.get((candidate_hash, target))
        if entry is None:
            return None
        return entry, Measurement.from_dict(entry["measurement"])

    def append(self, entry: dict[str, Any]) -> None:
        self._entries[(str(entry["hash"]), entry.get("target"))] = entry
        with open_append(self.path) as fh:
            fh.write((b"\n" if self._cut else b"") + (json.dumps(entry) + "\n").encode())
            fh.flush()
        self._cut = False


def _number(value: Any) -> bool:
    return value is None or finite(value) is not None


def _entry_key(entry: Any) -> tuple[str, str | None] | None:
    """(hash, target) of a well-formed log entry, else None."""
    if not isinstance(entry, dict):
        return None
    digest, target = entry.get("hash"), entry.get("target")
    if not isinstance(digest, str) or not (target is None or isinstance(target, str)):
        return None
    if not isinstance(entry.get("candidate"), str):
        return None
    if not all(_number(entry.get(k)) for k in ("accuracy", "val_loss", "train_s")):
        return None
    if not isinstance(entry.get("cost") or {}, dict):
        return None
    predicted = entry.get("predicted")
    if not (predicted is None or isinstance(predicted, dict)):
        return None
    try:
        m = Measurement.from_dict(entry["measurement"])
    except (KeyError, MeasurementFormatError, AttributeError, TypeError, ValueError):
        return None  # another version's record, or garbage
    if not all(_number(v) for v in asdict(m.latency).values()):
        return None
    return digest, target
