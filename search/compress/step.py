"""``hwnas search --compress``: the last step of a search, per target.

The searched model is compressed on the target's board (:func:`compress_searched`), the
variants and ``compression.json`` land in ``RUN_DIR/targets/<target>/compression/``, and the
target folder is rewritten around the chosen variant: its bytes as ``model.onnx``, its own
measurement as the card's proof, its validation (and test) accuracy, and a ``compression``
entry saying what was applied and why the other variants lost.

Nothing in the target folder changes until every file is ready: the variants, the report
and the new card are written into a staging folder first and moved into place at the end,
so a compression that fails leaves the fp32 folder as the search wrote it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwnas_bench import Measurement

from ..measure import Board
from ..model_card import CARD_FILE, MODEL_FILE, TARGETS, safe_name, write_target_folder
from ..records import TrialRecord
from ..settings import Budgets, MeasuredFigures, SearchSettings
from ..space import Candidate
from ..training.data import Split
from . import (
    CompressionError,
    CompressionResult,
    CompressSettings,
    OrtClassifier,
    Variant,
    check_arrays,
    compress_searched,
    inspect_classifier,
)

if TYPE_CHECKING:
    from ..loop.result import SearchedModel

Log = Callable[[str], None]

#: the folder of the variants inside the target's folder
COMPRESSION_DIR = "compression"
REPORT_FILE = "compression.json"


def _nothing(_: str) -> None:
    pass


def shipped_measurement(variant: Variant) -> Measurement:
    """The variant's median round (by median latency) of the interleaved measurement: one
    real Measurement of its bytes, as the agent made it, never a blend of rounds."""
    runs = sorted(variant.timing.measurements, key=lambda m: m.latency.median_ms)
    if not runs:
        raise CompressionError(
            f"variant {variant.name} has no measurement of its own to put on the card"
        )
    return runs[len(runs) // 2]


def applied_steps(result: CompressionResult, variant: Variant) -> list[dict[str, Any]]:
    """What was done to the fp32 model to make ``variant``, in order; [] for fp32."""
    steps: list[dict[str, Any]] = []
    if variant.kind.startswith("pruned"):
        # a pruned + int8 variant keeps the precision details; the ratio is its pruned parent's
        parent = variant if variant.kind == "pruned" else result.variant(_pruned_parent(variant))
        d = parent.details
        steps.append(
            {
                "step": "prune",
                "ratio": d.get("ratio"),
                "importance": d.get("importance"),
                "channels": d.get("channels"),
                "fine_tune_epochs": d.get("fine_tune_epochs"),
                "candidate": d.get("candidate"),
            }
        )
    if "int8 static" in variant.kind:
        steps.append(
            {
                "step": "int8",
                "mode": "static",
                "format": "QDQ",
                "method": variant.details.get("method"),
                "per_channel": result.settings.per_channel,
                "kept_in_float": list(variant.details.get("excluded_nodes") or []),
                "calibration": result.calibration,
            }
        )
    elif "int8 dynamic" in variant.kind:
        steps.append(
            {
                "step": "int8",
                "mode": "dynamic",
                "quantized": variant.details.get("quantized"),
                "per_channel": False,
                "fc_share_of_macs": variant.details.get("fc_share_of_macs"),
            }
        )
    return steps


def _pruned_parent(variant: Variant) -> str:
    """``pruned50_int8`` -> ``pruned50`` (the names :mod:`search.compress.pipeline` gives)."""
    name, _, _ = variant.name.partition("_")
    return name


def card_compression(
    result: CompressionResult, report: str, searched: tuple[str, str]
) -> dict[str, Any]:
    """The card's ``compression`` entry (JSON-ready); ``report`` is compression.json's path
    relative to the run directory, ``searched`` the (encoding, hash) the search found."""
    chosen, fp32 = result.chosen, result.fp32
    return {
        "variant": chosen.name,
        "kind": chosen.kind,
        "applied": applied_steps(result, chosen),
        "accuracy": {
            "validation": chosen.accuracy,
            "fp32_validation": fp32.accuracy,
            "drop_points": 0.0 if chosen is fp32 else chosen.drop_points(fp32),
            "evaluated_on": result.evaluation,
        },
        "latency_ratio_vs_fp32": chosen.timing.ratio,
        "objective": result.settings.objective,
        "tolerance_points": result.settings.tolerance,
        "measured_on": result.board,
        "not_chosen": {v.name: v.reason for v in result.variants if v is not chosen},
        "notes": list(result.notes),
        "searched_candidate": searched[0],
        "searched_hash": searched[1],
        "report": report,
    }


def within_budget(m: Measurement, budgets: Budgets) -> tuple[bool | None, str | None]:
    """Whether the shipped variant's own measurement is within the search's measured
    budgets (None: the search had none), and why not: over one, or a figure one needs not
    measured (an energy budget without an energy figure is never within it). The choice is
    made against fp32, not the budget: a variant faster than fp32 by the median of its
    rounds can still have one round over."""
    if not budgets.measured:
        return None, None
    broken = budgets.violations(MeasuredFigures.of(m, budgets.stat))
    return not broken, "; ".join(v.reason for v in broken) or None


def shipped_test_accuracy(model: bytes, test: tuple[np.ndarray, np.ndarray], name: str) -> float:
    """Accuracy of ``model`` on (x_test NCHW float32, y_test), in onnxruntime."""
    info = inspect_classifier(model, name)
    labelled = check_arrays(test[0], test[1], info, "the test set")
    assert labelled.y is not None
    return OrtClassifier(model, info).accuracy(labelled.x, labelled.y)


def search_provider(folder: Path, target: str, measurement: Measurement) -> dict[str, Any] | None:
    """The execution-provider choice on the card the search wrote in ``folder``, kept when
    the shipped variant was measured with that provider (the board's settings carry it)."""
    try:
        card = json.loads((folder / CARD_FILE).read_text())
    except (OSError, ValueError):
        return None
    provider = card.get("provider") if isinstance(card, dict) else None
    if not isinstance(provider, dict) or card.get("target") != target:
        return None
    used = measurement.settings.get("provider")
    return provider if used is None or used == provider.get("provider") else None


def compress_target(
    run_dir: Path,
    target: str,
    model: SearchedModel,
    data: Split,
    board: Board,
    *,
    settings: SearchSettings,
    board_name: str,
    facts: Mapping[str, Any],
    compress: CompressSettings | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    log: Log | None = None,
) -> tuple[Path, CompressionResult]:
    """Compress the searched ``model`` on ``board`` and ship the chosen variant in
    ``RUN_DIR/targets/<target>/``; return the folder and the compression result.

    ``data`` is the search's split (fine-tuning and calibration on its training part,
    accuracy on its validation part). ``test``: (x_test NCHW float32, y_test); the shipped
    variant's accuracy on it goes on the card. ``board_name`` and ``facts`` are the search's
    board, kept unless the compression's lease names its own (the board that measured the
    shipped bytes). Raises the compression's errors (SettingsError for bad ``compress``
    settings, CalibrationDataError for a bad test set, CompressionError) and the board's
    (``hwnas_bench`` errors) as they come; the target folder is then as it was.
    """
    log = log or _nothing
    if test is not None:  # a bad test set is refused before minutes of compression
        check_arrays(test[0], test[1], inspect_classifier(model.onnx, target), "the test set")
    log(f"{target}: compressing {model.record.candidate}")
    # the choice is made on the statistic the search chose by, whatever [compress] said
    chosen_by = dataclasses.replace(
        compress or CompressSettings(), latency_stat=settings.latency_stat
    )
    result = compress_searched(
        model, data, board, settings=chosen_by, name=model.record.hash, log=log
    )
    folder = ship_variant(
        run_dir,
        target,
        model.record,
        result,
        settings=settings,
        board_name=board.board_name or board_name,
        facts=board.facts or facts,
        test=test,
    )
    log(f"{target}: shipping {result.chosen.name} ({folder / MODEL_FILE})")
    return folder, result


def ship_variant(
    run_dir: Path,
    target: str,
    record: TrialRecord,
    result: CompressionResult,
    *,
    settings: SearchSettings,
    board_name: str,
    facts: Mapping[str, Any],
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Write ``result`` into ``RUN_DIR/targets/<target>/compression/`` and rewrite the
    target folder around ``result.chosen`` (``record``: the searched trial it was made
    from); staged first, moved into place only when every file is written."""
    chosen = result.chosen
    measurement = shipped_measurement(chosen)
    shipped = dataclasses.replace(record, accuracy=chosen.accuracy)
    pruned_to = chosen.details.get("candidate")
    if isinstance(pruned_to, str) and pruned_to != record.candidate:
        # a pruned variant is another architecture: the card describes the shipped one
        pruned_hash = Candidate.decode(pruned_to).hash
        shipped = dataclasses.replace(shipped, candidate=pruned_to, hash=pruned_hash)
    folder = run_dir / TARGETS / safe_name(target)
    report = f"{TARGETS}/{folder.name}/{COMPRESSION_DIR}/{REPORT_FILE}"
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".compress-", dir=folder))
    within, why_not = within_budget(measurement, settings.budgets)
    try:
        result.write(staging / COMPRESSION_DIR)
        on_test = None if test is None else shipped_test_accuracy(chosen.model, test, target)
        written = write_target_folder(
            staging,
            target,
            model=chosen.model,
            record=shipped,
            settings=settings,
            board_name=board_name,
            facts=facts,
            compression={
                **card_compression(result, report, (record.candidate, record.hash)),
                "within_budget": within,
                "budget_reason": why_not,
            },
            test_accuracy=on_test,
            measurement=measurement,
            provider=search_provider(folder, target, measurement),
        )
        _commit(staging, written, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.out = folder / COMPRESSION_DIR
    return folder


def _commit(staging: Path, written: Path, folder: Path) -> None:
    """Move the staged variants, model and card into ``folder``: renames on one file
    system, so each file is the old one or the new one, never part of either (between the
    model's rename and the card's, a reader is refused for a sha256 mismatch, not misled)."""
    try:
        final = folder / COMPRESSION_DIR
        if final.exists():  # an earlier compression of this target: replaced whole
            final.rename(staging / "replaced")
        (staging / COMPRESSION_DIR).rename(final)
        os.replace(written / MODEL_FILE, folder / MODEL_FILE)
        os.replace(written / CARD_FILE, folder / CARD_FILE)
    except OSError as exc:
        raise CompressionError(f"cannot move the compressed model into {folder}: {exc}") from exc
