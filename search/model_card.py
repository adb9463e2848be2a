"""The run's deliverable per target: ``RUN_DIR/targets/<target>/model.onnx`` and its model card.

The card (``model_card.json``, schema ``hwnas.model_card/1``) says what the model is (the
candidate's encoding, hash and layers), how good it is (validation and test accuracy), how to
feed it (the input layout), what compression was applied, the budgets it was chosen under,
and the measurement that proved it on the board: the full ``Measurement.to_dict()`` with its
latency statistics and spread, power or the reason there is none, and the board's facts.
``hwnas deploy`` checks the model's sha256 against the card before it ships it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from hwnas_bench import Measurement

from .errors import SearchError, SettingsError, SpaceError
from .evaluate import STATS
from .records import TrialRecord
from .settings import SearchSettings
from .space import Candidate

SCHEMA = "hwnas.model_card/1"
TARGETS = "targets"
MODEL_FILE, CARD_FILE, DEPLOY_FILE = "model.onnx", "model_card.json", "deploy.json"

#: the board facts a card keeps (the hello has many more; these say which board it was)
FACT_KEYS = ("hostname", "arch", "cpu_model", "cores", "onnxruntime", "device_model")


class ModelCardError(SearchError):
    """A run directory, target folder or card that cannot be used (a user mistake: exit 2)."""


def safe_name(target: str) -> str:
    """A folder name for a target name (``tag:jetson`` -> ``tag_jetson``; a name with
    non-ASCII letters also gets a short hash of itself, so ``板`` and ``機`` stay apart)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", target).lstrip(".") or "_"
    if not target.isascii():
        name += "-" + hashlib.sha256(target.encode()).hexdigest()[:8]
    return name


@dataclass(frozen=True)
class ModelCard:
    """What ``model_card.json`` holds; :meth:`to_dict` is the JSON, keys are public."""

    target: str  #: the target name as the run knew it
    board: str  #: the board that measured it (a farm may lease one of several)
    candidate: str  #: the canonical encoding
    candidate_hash: str
    architecture: list[str]  #: one line per layer, with shapes, for people
    accuracy: dict[str, float | None]  #: {"validation": a, "test": b or None}, fractions
    input: dict[str, Any]
    output: dict[str, Any]
    compression: dict[str, Any] | None  #: None: the fp32 model as trained
    budgets: dict[str, float]  #: the search's constraints (latency_ms, energy_mj, ...)
    latency_stat: str  #: p50, p95, p99 or mean
    latency_ms: float  #: that statistic, as measured
    energy_mj: float | None  #: as measured; None without a power meter (measurement says why)
    measurement: dict[str, Any]  #: Measurement.to_dict()
    board_facts: dict[str, Any]
    created: str  #: ISO 8601, UTC
    model_sha256: str
    model_bytes: int
    hwnas_bench_version: str
    #: the execution provider it was measured with and how it was chosen for the board
    #: (``ProviderChoice.to_dict()``); None on cards written before the choice existed
    provider: dict[str, Any] | None = None
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"schema": data.pop("schema"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        if data.get("schema") != SCHEMA:
            raise ModelCardError(f"not a model card of schema {SCHEMA}: {data.get('schema')!r}")
        names = {f.name for f in fields(cls)}
        optional = {f.name for f in fields(cls) if f.default is not MISSING}
        missing = sorted(n for n in names - optional if n not in data)
        if missing:
            raise ModelCardError(f"model card lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def measured(self) -> Measurement:
        """The card's measurement as a ``Measurement``."""
        return Measurement.from_dict(self.measurement)

    @property
    def latency_budget_ms(self) -> float | None:
        value = self.budgets.get("latency_ms")
        return float(value) if value is not None else None


def architecture(candidate: Candidate) -> list[str]:
    """``conv 3x3 /1, 8 ch: 8x8x8 -> 8x8x8`` lines (shapes C x H x W), then the classifier."""
    lines: list[str] = []
    shapes = candidate.shapes()
    for layer, (before, after) in zip(candidate.layers, shapes, strict=False):
        shape_in, shape_out = "x".join(map(str, before)), "x".join(map(str, after))
        if layer.kind == "fc":
            what = f"fc {layer.width} units + relu"
        elif layer.kind == "pool":
            what = f"max pool {layer.kernel}x{layer.kernel} stride {layer.stride}"
        else:
            kind = "conv" if layer.kind == "conv" else "depthwise-separable conv"
            what = f"{kind} {layer.kernel}x{layer.kernel} stride {layer.stride}, {layer.width} ch"
        lines.append(f"{what}: {shape_in} -> {shape_out}")
    features = shapes[-1][0][0]
    lines.append(f"classifier fc: {features} -> {candidate.num_classes} logits")
    return lines


def input_layout(candidate: Candidate) -> dict[str, Any]:
    h, w, c = candidate.input_shape
    return {
        "name": "input",
        "shape": [1, c, h, w],
        "dtype": "float32",
        "layout": "NCHW",
        "note": (
            f"channels first: an image held channels-last as (H, W, C) = ({h}, {w}, {c}) "
            "must be transposed to (C, H, W), e.g. x.transpose(2, 0, 1)[None], scaled as in "
            "training"
        ),
    }


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def write_target_folder(
    run_dir: Path,
    target: str,
    *,
    model: bytes,
    record: TrialRecord,
    settings: SearchSettings,
    board_name: str,
    facts: dict[str, Any],
    compression: dict[str, Any] | None = None,
    test_accuracy: float | None = None,
    measurement: Measurement | None = None,
    provider: dict[str, Any] | None = None,
) -> Path:
    """Write ``RUN_DIR/targets/<target>/model.onnx`` and ``model_card.json``; return the folder.

    ``model`` is the bytes that ship; ``measurement`` their measurement on the board, the
    card's proof (default: the trial's own, which is of the fp32 model: a compressed
    variant must pass its own, e.g. the median round of its ``Timing.measurements``). A
    measurement of other bytes is refused: ``hwnas deploy`` would compare against it.
    """
    from hwnas_bench import __version__

    m = measurement or record.measurement
    if m is None:
        raise SettingsError(f"trial {record.number} ({record.hash}) has no measurement to card")
    if not model:
        raise SettingsError("the model bytes are empty")
    sha256 = hashlib.sha256(model).hexdigest()
    if m.model.sha256 != sha256:
        raise SettingsError(
            f"the measurement is of model {m.model.sha256[:12]}, not of the model to ship "
            f"({sha256[:12]}): pass the shipped model's own measurement"
        )
    try:
        candidate = Candidate.decode(record.candidate)
    except SpaceError as exc:
        raise SettingsError(f"trial {record.number}: {exc}") from exc
    stat = settings.latency_stat
    card = ModelCard(
        target=target,
        board=board_name,
        candidate=record.candidate,
        candidate_hash=record.hash,
        architecture=architecture(candidate),
        accuracy={"validation": record.accuracy, "test": test_accuracy},
        input=input_layout(candidate),
        output={
            "name": "logits",
            "shape": [1, candidate.num_classes],
            "dtype": "float32",
            "classes": candidate.num_classes,
            "note": "raw logits: argmax is the class",
        },
        compression=compression,
        budgets=dict(settings.constraints),
        latency_stat=stat,
        latency_ms=float(getattr(m.latency, STATS[stat])),
        energy_mj=m.power.energy_mj,
        measurement=m.to_dict(),
        board_facts={k: facts.get(k) for k in FACT_KEYS},
        created=_utc_now(),
        model_sha256=sha256,
        model_bytes=len(model),
        hwnas_bench_version=__version__,
        provider=provider,
    )
    folder = run_dir / TARGETS / safe_name(target)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / MODEL_FILE, model)
    _write_atomic(folder / CARD_FILE, (json.dumps(card.to_dict(), indent=2) + "\n").encode())
    return folder


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)  # a reader sees the old file or the new one


def run_targets(run_dir: Path) -> list[str]:
    """The target names the run has a folder for (as their cards name them)."""
    names = []
    for card in sorted((run_dir / TARGETS).glob(f"*/{CARD_FILE}")):
        try:
            names.append(str(json.loads(card.read_text())["target"]))
        except (OSError, ValueError, KeyError, TypeError):
            names.append(card.parent.name)
    return names


def read_target_folder(run_dir: Path, target: str) -> tuple[Path, ModelCard]:
    """The model's path and its card, checked: the card parses and the model's sha256 is the
    card's. Raises ModelCardError saying what is wrong (and which targets the run has)."""
    if not run_dir.is_dir():
        raise ModelCardError(f"{run_dir} is not a directory")
    if not (run_dir / "search.json").is_file() and not (run_dir / TARGETS).is_dir():
        raise ModelCardError(f"{run_dir} is not a search run (no search.json, no {TARGETS}/)")
    folder = run_dir / TARGETS / safe_name(target)
    card_path, model_path = folder / CARD_FILE, folder / MODEL_FILE
    if not card_path.is_file():
        have = run_targets(run_dir)
        listed = ", ".join(have) if have else f"none: no {TARGETS}/*/{CARD_FILE}"
        raise ModelCardError(f"{run_dir} has no model for target '{target}' (targets: {listed})")
    try:
        card = ModelCard.from_dict(json.loads(card_path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelCardError(f"{card_path} is not a readable model card: {exc}") from exc
    if card.target != target:
        raise ModelCardError(f"{card_path} is the card of target '{card.target}', not '{target}'")
    try:
        data = model_path.read_bytes()
    except OSError as exc:
        raise ModelCardError(f"{model_path}: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != card.model_sha256:
        raise ModelCardError(
            f"{model_path} is not the model its card describes (sha256 {digest[:12]}, card "
            f"{card.model_sha256[:12]}): it was changed after the run; refusing it"
        )
    return model_path, card
