"""The run's deliverable per target: ``RUN_DIR/targets/<target>/model.onnx`` and its model card.

The card (``model_card.json``, schema ``hwnas.model_card/1``) says what the model is (the
candidate's encoding, hash and layers), how good it is (validation and test accuracy), how to
feed it (the input layout), what compression was applied, the budgets it was chosen under,
and the measurement that proved it on the board: the full ``Measurement.to_dict()`` with its
latency statistics and spread, power or the reason there is none, and the board's facts.
``hwnas deploy`` trusts none of it: :func:`load_target_folder` checks every field of the card
(finite numbers, a 12-hex-digit candidate hash, bench settings the agent would accept), and
the model file's type and size against the card's ``model_bytes`` before it reads a byte,
then its sha256 against the card's.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import re
import stat as stat_mode
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from hwnas_bench import BoardFacts, Measurement
from hwnas_bench.errors import MeasurementFormatError

from .errors import SearchError, SettingsError, SpaceError
from .files import MAX_MODEL_BYTES, owned_dir, write_file
from .records import TrialRecord
from .settings import CONSTRAINTS, STATS, Budgets, SearchSettings
from .space import Candidate

if TYPE_CHECKING:
    from .loop.final import FinalModel

SCHEMA = "hwnas.model_card/1"
TARGETS = "targets"
MODEL_FILE, CARD_FILE, DEPLOY_FILE = "model.onnx", "model_card.json", "deploy.json"

#: the board facts a card keeps (the hello has many more; these say which board it was)
FACT_KEYS = ("hostname", "arch", "cpu_model", "cores", "onnxruntime", "device_model")

#: the largest card read (a card with every sample of a long loop is well under 1 MiB)
MAX_CARD_BYTES = 16 * 1024 * 1024
#: the deepest JSON nesting a card may have (the wire protocol's limit)
MAX_DEPTH = 32
_HASH = re.compile(r"[0-9a-f]{12}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
    #: fractions: {"validation": the search's, "test": the shipped model's or None}; a
    #: retrained model's card adds "proxy" (the search's validation accuracy) and "final"
    #: (the retrained model's test accuracy)
    accuracy: dict[str, float | None]
    input: dict[str, Any]
    output: dict[str, Any]
    compression: dict[str, Any] | None  #: None: the fp32 model as trained
    #: the search's budgets as a mapping (``Budgets.to_mapping()``: latency_ms, energy_mj,
    #: ...); :attr:`budget_limits` is the typed form
    budgets: dict[str, float]
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
    #: the winner's retraining (``FinalModel.to_dict()``: epochs, samples, train_s,
    #: proxy_accuracy, ...); None when the searched model ships (cards written before too)
    final: dict[str, Any] | None = None
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"schema": data.pop("schema"), **data}

    @classmethod
    def from_dict(cls, data: Any) -> ModelCard:
        """The card, every field checked (:func:`check_card`); ModelCardError names the first
        field that is wrong."""
        if not isinstance(data, dict):
            raise ModelCardError(f"a model card is a JSON object, not {type(data).__name__}")
        if data.get("schema") != SCHEMA:
            raise ModelCardError(f"not a model card of schema {SCHEMA}: {data.get('schema')!r}")
        if _depth(data) > MAX_DEPTH:
            raise ModelCardError(f"model card: nested deeper than {MAX_DEPTH} levels")
        names = {f.name for f in fields(cls)}
        optional = {f.name for f in fields(cls) if f.default is not MISSING}
        missing = sorted(n for n in names - optional if n not in data)
        if missing:
            raise ModelCardError(f"model card lacks {', '.join(missing)}")
        card = cls(**{k: v for k, v in data.items() if k in names})
        check_card(card)
        return card

    def measured(self) -> Measurement:
        """The card's measurement as a ``Measurement``."""
        return Measurement.from_dict(self.measurement)

    @property
    def budget_limits(self) -> Budgets:
        """The card's budgets, on its latency statistic (checked by :func:`check_card`)."""
        return Budgets.from_mapping(self.budgets, stat=self.latency_stat)

    @property
    def latency_budget_ms(self) -> float | None:
        return self.budget_limits.latency_ms


def _bad(field: str, want: str, value: object) -> ModelCardError:
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return ModelCardError(f"model card: {field} must be {want}, not {shown[:60]}")


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_number(field: str, value: object, *, strict: bool = True) -> None:
    """A finite number > 0 (``strict``) or >= 0; bool, NaN and infinity are not numbers."""
    if _finite(value) and (value > 0 or (not strict and value == 0)):
        return
    raise _bad(field, f"a finite number {'>' if strict else '>='} 0", value)


def _depth(data: object) -> int:
    """How deep ``data`` nests (iteratively: a deep card cannot exhaust the stack here)."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                break
            children = item.values() if isinstance(item, dict) else item
            todo.extend((child, depth + 1) for child in children)
    return deepest


#: the accuracies a card may give, each null or a fraction in [0, 1]
ACCURACY_KEYS = ("validation", "test", "proxy", "final")


def check_card(card: ModelCard) -> None:
    """Every field of ``card`` of its type and in range, or ModelCardError naming it: the
    card drives a board (the directory it is copied into, the bench settings) and a verdict."""
    for name in ("target", "board", "candidate", "created", "hwnas_bench_version"):
        value = getattr(card, name)
        if not isinstance(value, str) or (name != "board" and not value):
            raise _bad(name, "a non-empty string", value)
    if not isinstance(card.candidate_hash, str) or not _HASH.fullmatch(card.candidate_hash):
        raise _bad("candidate_hash", "12 hex digits", card.candidate_hash)
    if not isinstance(card.model_sha256, str) or not _SHA256.fullmatch(card.model_sha256):
        raise _bad("model_sha256", "64 hex digits", card.model_sha256)
    size = card.model_bytes
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_MODEL_BYTES:
        raise _bad("model_bytes", f"an integer in 1..{MAX_MODEL_BYTES}", size)
    if not isinstance(card.architecture, list) or not all(
        isinstance(line, str) for line in card.architecture
    ):
        raise _bad("architecture", "a list of strings", card.architecture)
    for name in ("input", "output", "board_facts", "measurement"):
        if not isinstance(getattr(card, name), dict):
            raise _bad(name, "an object", getattr(card, name))
    for name in ("compression", "provider", "final"):
        if getattr(card, name) is not None and not isinstance(getattr(card, name), dict):
            raise _bad(name, "an object or null", getattr(card, name))
    if card.final is not None:
        epochs = card.final.get("epochs")
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise _bad("final.epochs", "an integer >= 1", epochs)
        proxy = card.final.get("proxy_accuracy")
        if proxy is not None and not (_finite(proxy) and 0.0 <= proxy <= 1.0):
            raise _bad("final.proxy_accuracy", "null or a fraction in [0, 1]", proxy)
    if not isinstance(card.accuracy, dict):
        raise _bad("accuracy", "an object", card.accuracy)
    for key in ACCURACY_KEYS:
        value = card.accuracy.get(key)
        if value is not None and not (_finite(value) and 0.0 <= value <= 1.0):
            raise _bad(f"accuracy.{key}", "null or a fraction in [0, 1]", value)
    if not isinstance(card.budgets, dict):
        raise _bad("budgets", "an object", card.budgets)
    for key, value in card.budgets.items():
        if key not in CONSTRAINTS:
            raise _bad("budgets", f"keyed by {', '.join(CONSTRAINTS)}", key)
        _check_number(f"budgets.{key}", value)
    if not isinstance(card.latency_stat, str) or card.latency_stat not in STATS:
        raise _bad("latency_stat", f"one of {', '.join(STATS)}", card.latency_stat)
    _check_number("latency_ms", card.latency_ms)
    if card.energy_mj is not None:
        _check_number("energy_mj", card.energy_mj, strict=False)
    _check_measurement(card)


def _check_measurement(card: ModelCard) -> None:
    """The card's measurement parses, is of the card's model, has finite statistics, and
    holds bench settings the agent would take (deploy re-measures with them)."""
    try:
        m = card.measured()
    except (MeasurementFormatError, TypeError, ValueError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelCardError(f"model card: measurement is not a measurement: {first}") from exc
    if m.model.sha256 != card.model_sha256:
        raise ModelCardError(
            f"model card: its measurement is of model {str(m.model.sha256)[:12]}, not of its "
            f"model {card.model_sha256[:12]}"
        )
    for key in ("median_ms", "p95_ms", STATS[card.latency_stat]):
        _check_number(f"measurement.latency.{key}", getattr(m.latency, key), strict=False)
    try:
        m.settings.validate()
    except (TypeError, ValueError) as exc:
        raise ModelCardError(f"model card: measurement.settings: {exc}") from exc


def card_facts(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The hello's facts a card keeps (FACT_KEYS). The hello says ``cores_physical`` and
    ``cores_logical``; the card's ``cores`` is the physical count (as the board's profile
    counts cores), the logical one where the board does not say."""
    kept = {k: facts.get(k) for k in FACT_KEYS}
    if kept["cores"] is None:
        kept["cores"] = BoardFacts.from_mapping(facts).cores
    return kept


def architecture(candidate: Candidate) -> list[str]:
    """``conv 3x3 /1, 8 ch: 8x8x8 -> 8x8x8`` lines (shapes C x H x W), then the classifier."""
    from .blocks.candidate import BlockCandidate

    if isinstance(candidate, BlockCandidate):  # its blocks, not flat layers
        return candidate.architecture()
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
    from .blocks.candidate import BlockCandidate

    if isinstance(candidate, BlockCandidate):  # (L, C) signals too; NCL or NCHW
        return candidate.input_layout()
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
    facts: Mapping[str, Any],
    compression: dict[str, Any] | None = None,
    test_accuracy: float | None = None,
    measurement: Measurement | None = None,
    provider: dict[str, Any] | None = None,
    final: FinalModel | None = None,
) -> Path:
    """Write ``RUN_DIR/targets/<target>/model.onnx`` and ``model_card.json``; return the folder.

    ``model`` is the bytes that ship; ``measurement`` their measurement on the board, the
    card's proof (default: the retrained model's own with ``final``, else the trial's, which
    is of the searched fp32 model: a compressed variant must pass its own, e.g. the median
    round of its ``Timing.measurements``). A measurement of other bytes is refused: ``hwnas
    deploy`` would compare against it. ``final``: the model was retrained (loop/final.py):
    the card keeps the search's proxy accuracy and the retraining beside the test accuracy.
    """
    from hwnas_bench import __version__

    m = measurement or (final.measurement if final is not None else record.measurement)
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
        accuracy=card_accuracy(record.accuracy, test_accuracy, retrained=final is not None),
        input=input_layout(candidate),
        output={
            "name": "logits",
            "shape": [1, candidate.num_classes],
            "dtype": "float32",
            "classes": candidate.num_classes,
            "note": "raw logits: argmax is the class",
        },
        compression=compression,
        budgets=settings.budgets.to_mapping(),
        latency_stat=stat,
        latency_ms=float(getattr(m.latency, STATS[stat])),
        energy_mj=m.power.energy_mj,
        measurement=m.to_dict(),
        board_facts=card_facts(facts),
        created=_utc_now(),
        model_sha256=sha256,
        model_bytes=len(model),
        hwnas_bench_version=__version__,
        provider=provider,
        final=final.to_dict() if final is not None else None,
    )
    folder = owned_dir(run_dir / TARGETS / safe_name(target))
    # by rename (a reader sees the old file or the new one), never through a planted link
    write_file(folder / MODEL_FILE, model)
    write_file(folder / CARD_FILE, json.dumps(card.to_dict(), indent=2) + "\n")
    return folder


def card_accuracy(
    proxy: float | None, test: float | None, *, retrained: bool
) -> dict[str, float | None]:
    """The card's ``accuracy``: the search's validation accuracy and the shipped model's test
    accuracy; a retrained model's also as ``proxy`` and ``final`` (the keys say which)."""
    accuracy = {"validation": proxy, "test": test}
    if retrained:
        accuracy.update(proxy=proxy, final=test)
    return accuracy


def run_targets(run_dir: Path) -> list[str]:
    """The target names the run has a folder for (as their cards name them)."""
    names = []
    for card in sorted((run_dir / TARGETS).glob(f"*/{CARD_FILE}")):
        try:
            names.append(str(json.loads(card.read_text())["target"]))
        except (OSError, ValueError, KeyError, TypeError):
            names.append(card.parent.name)
    return names


@dataclass(frozen=True)
class TargetFolder:
    """A target folder as read once, checked: deploy ships these very bytes."""

    model_path: Path
    card: ModelCard
    model: bytes
    card_bytes: bytes


def _read_regular(path: Path, limit: int, size: int | None = None) -> bytes:
    """The bytes of the regular file ``path``, refused before a byte is read when it is
    anything else (a FIFO would block, a link to /dev/zero never end), larger than
    ``limit``, or not ``size`` bytes long where ``size`` is given."""
    try:
        # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ModelCardError(f"{path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat_mode.S_ISREG(info.st_mode):
            raise ModelCardError(f"{path} is not a regular file: refusing it")
        if size is not None and info.st_size != size:
            raise ModelCardError(
                f"{path} is not the model its card describes ({info.st_size} bytes, card "
                f"{size}): it was changed after the run; refusing it"
            )
        if info.st_size > limit:
            raise ModelCardError(f"{path} is {info.st_size} bytes, more than {limit}: refusing it")
        os.set_blocking(fd, True)
        data = f.read(limit + 1)
    if len(data) > limit or (size is not None and len(data) != size):
        raise ModelCardError(f"{path} changed while it was read: refusing it")
    return data


def load_target_folder(run_dir: Path, target: str) -> TargetFolder:
    """The target's model and card, each read once and checked: the card is a regular
    file that parses and whose every field is valid (:func:`check_card`), the model a
    regular file of the card's ``model_bytes`` whose sha256 is the card's. Raises
    ModelCardError saying what is wrong (and which targets the run has)."""
    if not run_dir.is_dir():
        raise ModelCardError(f"{run_dir} is not a directory")
    if not (run_dir / "search.json").is_file() and not (run_dir / TARGETS).is_dir():
        raise ModelCardError(f"{run_dir} is not a search run (no search.json, no {TARGETS}/)")
    folder = run_dir / TARGETS / safe_name(target)
    card_path, model_path = folder / CARD_FILE, folder / MODEL_FILE
    if not card_path.exists():
        have = run_targets(run_dir)
        listed = ", ".join(have) if have else f"none: no {TARGETS}/*/{CARD_FILE}"
        raise ModelCardError(f"{run_dir} has no model for target '{target}' (targets: {listed})")
    card_bytes = _read_regular(card_path, MAX_CARD_BYTES)
    try:
        data = json.loads(card_bytes)
    except (ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ModelCardError(f"{card_path} is not a readable model card: {why}") from exc
    try:
        card = ModelCard.from_dict(data)
    except ModelCardError as exc:
        raise ModelCardError(f"{card_path}: {exc}") from exc
    if card.target != target:
        raise ModelCardError(f"{card_path} is the card of target '{card.target}', not '{target}'")
    model = _read_regular(model_path, MAX_MODEL_BYTES, size=card.model_bytes)
    digest = hashlib.sha256(model).hexdigest()
    if digest != card.model_sha256:
        raise ModelCardError(
            f"{model_path} is not the model its card describes (sha256 {digest[:12]}, card "
            f"{card.model_sha256[:12]}): it was changed after the run; refusing it"
        )
    return TargetFolder(model_path, card, model, card_bytes)


def read_target_folder(run_dir: Path, target: str) -> tuple[Path, ModelCard]:
    """The model's path and its card, checked as :func:`load_target_folder` checks them."""
    folder = load_target_folder(run_dir, target)
    return folder.model_path, folder.card
