"""`hwnas search --compress`'s last step on `local`: a 2-trial digits search, its model
compressed on the board, the chosen variant shipped in the target folder with its own
measurement; a compression that fails leaves the search's folder as it was."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hwnas_bench.errors import UnknownTargetError
from search import SearchedModel, Searcher
from search.compress import CalibrationDataError, CompressionResult, CompressSettings
from search.compress.step import COMPRESSION_DIR, applied_steps, compress_target, ship_variant
from search.errors import SettingsError
from search.measure import Board, bench_settings
from search.model_card import CARD_FILE, MODEL_FILE, architecture, read_target_folder
from search.space import Candidate
from search.training.data import Arrays, Split, split, to_nchw

from .test_compress import prunable_searcher

SMALL = {"min_time_s": 0.05, "min_iterations": 10, "warmup_min_s": 0.0}
QUICK = CompressSettings(
    prune_ratios=(0.5,), methods=("minmax",), rounds=2, fine_tune_epochs=1, calibration_samples=64
)
SEARCHED = slice(0, 600)  #: the search's samples; the test set is the next 300
TESTED = slice(600, 900)


class SearchRun:
    def __init__(self, out: Path, searcher: Searcher, best: SearchedModel) -> None:
        self.out, self.searcher, self.best = out, searcher, best


@pytest.fixture(scope="module")
def search_run(digits: Arrays, tmp_path_factory: pytest.TempPathFactory) -> SearchRun:
    """conv and fc layers, so both prune; the run directory is copied by each test."""
    out = tmp_path_factory.mktemp("search")
    searcher = prunable_searcher(out, epochs=2)
    best = searcher.search(digits.x[SEARCHED], digits.y[SEARCHED])
    return SearchRun(out, searcher, best)


@pytest.fixture(scope="module")
def search_split(digits: Arrays) -> Split:
    """The split the search made of its samples (validation 0.2, seed 0)."""
    return split(to_nchw(digits.x[SEARCHED], (8, 8, 1)), digits.y[SEARCHED], 0.2, 0)


def _test_set(digits: Arrays) -> tuple[np.ndarray, np.ndarray]:
    return to_nchw(digits.x[TESTED], (8, 8, 1)), digits.y[TESTED]


def _copy(run: SearchRun, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(run.out, run_dir)
    return run_dir


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _compress(
    run: SearchRun, run_dir: Path, data: Split, board_target: str = "local", **kw: Any
) -> tuple[Path, CompressionResult]:
    result = run.searcher.result
    assert result is not None
    board = Board(board_target, bench=bench_settings(SMALL))
    try:
        return compress_target(
            run_dir,
            "local",
            run.best,
            data,
            board,
            settings=run.searcher.settings,
            board_name=result.board,
            facts=result.facts,
            **kw,
        )
    finally:
        board.close()


def test_the_chosen_variant_ships_with_its_own_measurement_and_card(
    search_run: SearchRun, search_split: Split, digits: Arrays, tmp_path: Path
) -> None:
    run_dir = _copy(search_run, tmp_path)
    _, searched_card = read_target_folder(run_dir, "local")
    lines: list[str] = []
    folder, result = _compress(
        search_run, run_dir, search_split, compress=QUICK, test=_test_set(digits), log=lines.append
    )
    chosen, fp32 = result.chosen, result.fp32
    assert folder == run_dir / "targets" / "local"
    assert [v.name for v in result.variants][:2] == ["fp32", "int8"]
    assert {"pruned50", "pruned50_int8"} <= {v.name for v in result.variants}
    assert any("compressing" in line for line in lines)

    # the folder is one `hwnas deploy` accepts, and ships the chosen variant's bytes
    model_path, card = read_target_folder(run_dir, "local")
    shipped = model_path.read_bytes()
    assert shipped == chosen.model
    assert hashlib.sha256(shipped).hexdigest() == card.model_sha256
    assert card.model_bytes == len(shipped)
    # its proof is a measurement of those bytes, one of the rounds the choice compared
    assert card.measurement["model"]["sha256"] == card.model_sha256
    assert card.measured() in chosen.timing.measurements
    assert card.latency_ms == pytest.approx(card.measured().latency.median_ms)
    # the provider the search chose for the board stays: the variants were measured with it
    assert searched_card.provider is not None
    assert card.provider == searched_card.provider
    assert card.measurement["settings"]["provider"] == card.provider["provider"]
    if chosen is fp32:  # the re-exported fp32 is byte for byte the search's model
        assert shipped == search_run.best.onnx
    # the search had no budget: nothing to be within; with one, the shipped figure is judged
    assert card.compression is not None
    assert card.compression["within_budget"] is None
    from search.compress.step import within_budget
    from search.settings import Budgets

    figure = card.latency_ms
    assert within_budget(card.measured(), Budgets(latency_ms=figure * 2)) == (True, None)
    within, why = within_budget(card.measured(), Budgets(latency_ms=figure / 2))
    assert within is False
    assert why is not None
    assert why.startswith("over budget: p50 ")

    # accuracy: the shipped variant's, validation as compression measured it, test fresh
    assert card.accuracy["validation"] == chosen.accuracy
    test_acc = card.accuracy["test"]
    assert test_acc is not None
    assert 0.5 < test_acc <= 1.0
    # the card describes the shipped architecture (a pruned variant has narrower layers)
    assert card.candidate == chosen.details.get("candidate", search_run.best.record.candidate)
    comp = card.compression
    assert comp is not None
    assert comp["variant"] == chosen.name
    assert comp["searched_candidate"] == search_run.best.record.candidate
    assert comp["accuracy"]["validation"] == chosen.accuracy
    assert comp["accuracy"]["fp32_validation"] == fp32.accuracy
    assert comp["latency_ratio_vs_fp32"] == chosen.timing.ratio
    assert comp["objective"] == "latency"
    assert comp["tolerance_points"] == QUICK.tolerance
    assert set(comp["not_chosen"]) == {v.name for v in result.variants} - {chosen.name}
    assert all(comp["not_chosen"].values())
    assert comp["applied"] == applied_steps(result, chosen)

    # the variants and the report where the card says
    report_path = run_dir / comp["report"]
    assert report_path == folder / COMPRESSION_DIR / "compression.json"
    report = json.loads(report_path.read_text())
    assert report["chosen"] == chosen.name
    assert (folder / COMPRESSION_DIR / f"{chosen.name}.onnx").read_bytes() == shipped
    assert result.out == folder / COMPRESSION_DIR
    assert {p.name for p in folder.iterdir()} == {COMPRESSION_DIR, CARD_FILE, MODEL_FILE}

    # what each variant says was applied to it
    int8, pruned = result.variant("int8"), result.variant("pruned50")
    assert applied_steps(result, fp32) == []
    [step] = applied_steps(result, int8)
    assert step["mode"] == "static"
    assert step["method"] == "minmax"
    assert step["per_channel"] is True
    assert step["kept_in_float"] == int8.details["excluded_nodes"]
    [step] = applied_steps(result, pruned)
    assert (step["step"], step["ratio"], step["importance"]) == ("prune", 0.5, "l1")
    steps = applied_steps(result, result.variant("pruned50_int8"))
    assert [s["step"] for s in steps] == ["prune", "int8"]
    assert steps[0]["candidate"] == pruned.details["candidate"]

    # a pruned variant shipped (picked by hand: the rule's pick depends on the timing) over
    # the compressed folder: the card describes the narrower model, compression/ replaced
    pick = result.variant("pruned50_int8")
    result.chosen = pick
    for v in result.variants:
        v.chosen, v.reason = v is pick, "" if v is pick else (v.reason or "not picked here")
    search = search_run.searcher.result
    assert search is not None
    ship_variant(
        run_dir, "local", search_run.best.record, result,
        settings=search_run.searcher.settings, board_name=search.board, facts=search.facts,
    )  # fmt: skip
    model_path, card = read_target_folder(run_dir, "local")
    assert model_path.read_bytes() == pick.model
    assert card.candidate == pick.details["candidate"] != search_run.best.record.candidate
    assert card.candidate_hash == Candidate.decode(card.candidate).hash
    assert card.architecture == architecture(Candidate.decode(card.candidate))
    assert card.measured() in pick.timing.measurements
    assert card.accuracy == {"validation": pick.accuracy, "test": None}
    assert card.provider == searched_card.provider
    assert card.compression is not None
    assert card.compression["variant"] == "pruned50_int8"
    assert [s["step"] for s in card.compression["applied"]] == ["prune", "int8"]
    assert json.loads(report_path.read_text())["chosen"] == "pruned50_int8"
    assert (folder / COMPRESSION_DIR / "pruned50_int8.onnx").read_bytes() == pick.model
    assert {p.name for p in folder.iterdir()} == {COMPRESSION_DIR, CARD_FILE, MODEL_FILE}


def test_a_failing_compression_leaves_the_search_folder_as_it_was(
    search_run: SearchRun, search_split: Split, digits: Arrays, tmp_path: Path
) -> None:
    run_dir = _copy(search_run, tmp_path)
    folder = run_dir / "targets" / "local"
    before = _snapshot(folder)
    assert set(before) == {CARD_FILE, MODEL_FILE}
    with pytest.raises(SettingsError, match=r"pruning ratios must be in \(0, 1\)"):
        _compress(search_run, run_dir, search_split, compress=CompressSettings(prune_ratios=(1.5,)))
    assert _snapshot(folder) == before
    x_test, y_test = _test_set(digits)
    with pytest.raises(CalibrationDataError, match="the test set"):
        _compress(search_run, run_dir, search_split, compress=QUICK, test=(x_test[:, 0], y_test))
    assert _snapshot(folder) == before
    # the variants are made, then the board cannot be leased to measure them: nothing lands
    with pytest.raises(UnknownTargetError, match="no-such-board"):
        _compress(search_run, run_dir, search_split, board_target="no-such-board", compress=QUICK)
    assert _snapshot(folder) == before
    read_target_folder(run_dir, "local")  # still the search's fp32 folder, still valid


def test_the_variants_are_compared_on_the_searchs_statistic(
    search_run: SearchRun, search_split: Split, tmp_path: Path
) -> None:
    """A search that chose by p95 compresses by p95, whatever the [compress] settings say."""
    run_dir = _copy(search_run, tmp_path)
    settings = search_run.searcher.settings
    p95_search = dataclasses.replace(
        settings, budgets=dataclasses.replace(settings.budgets, stat="p95")
    )
    assert dataclasses.replace(QUICK, prune_ratios=()).latency_stat == "p50"
    result = search_run.searcher.result
    assert result is not None
    board = Board("local", bench=bench_settings(SMALL))
    try:
        _, compressed = compress_target(
            run_dir, "local", search_run.best, search_split, board, settings=p95_search,
            board_name=result.board, facts=result.facts,
            compress=dataclasses.replace(QUICK, prune_ratios=()),
        )  # fmt: skip
    finally:
        board.close()
    assert compressed.settings.latency_stat == "p95"
    fp32 = compressed.fp32
    for v in compressed.variants:
        assert v.timing.stat == "p95"
        assert v.timing.round_ms == [m.latency.p95_ms for m in v.timing.measurements]
        assert v.timing.ratio == pytest.approx(v.timing.stat_ms / fp32.timing.stat_ms)
    assert "p95 rounds" in compressed.table()
    report = json.loads((run_dir / "targets" / "local" / COMPRESSION_DIR / "compression.json")
                        .read_text())  # fmt: skip
    assert report["latency_stat"] == "p95"
