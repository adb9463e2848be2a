"""The winner's retraining: from scratch with the search's seed, on train+validation, for
final_epochs; exported, measured again on each board (trained once for boards that share
their best), its own measurement and the proxy accuracy kept."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from search import Searcher, SearchSpace
from search.errors import SettingsError
from search.loop.final import retrain_winners
from search.measure import Board, bench_settings
from search.model_card import ModelCard
from search.records import MEASURED, TrialRecord
from search.settings import Budgets, SearchSettings
from search.space import Candidate
from search.training.data import Split, load_dataset, split, to_nchw
from search.training.final import retrain, train_and_validation
from search.training.settings import TrainSettings

TINY = Candidate.decode("in8x8x1-conv_k3_s1_c4-pool_k2_s2-out10")
SMALL = {"min_time_s": 0.05, "min_iterations": 10, "warmup_min_s": 0.0}


def _digits(n: int = 300) -> Split:
    d = load_dataset("digits")
    return split(to_nchw(d.x[:n], (8, 8, 1)), d.y[:n], 0.25, 0)


def test_the_retraining_uses_every_sample_and_is_seeded() -> None:
    data = _digits()
    everything = train_and_validation(data)
    assert len(everything.x_train) == 300
    assert len(everything.x_val) == 0
    settings = TrainSettings(epochs=1, final_epochs=2)
    a, result = retrain(TINY, data, settings, seed=3)
    b, _ = retrain(TINY, data, settings, seed=3)
    assert result.epochs_run == 2
    assert np.isnan(result.val_accuracy)  # nothing held out: the test set judges it
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(x, y)
    c, _ = retrain(TINY, data, settings, seed=4)
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), c.parameters(), strict=True))
    with pytest.raises(SettingsError, match="final_epochs"):
        retrain(TINY, data, TrainSettings(final_epochs=0), seed=0)


def test_each_board_measures_the_retrained_model_trained_once() -> None:
    data = _digits()
    best = TrialRecord(0, TINY.encode(), TINY.hash, MEASURED, accuracy=0.75)
    settings = SearchSettings(
        train=TrainSettings(epochs=1, final_epochs=2),
        budgets=Budgets(latency_ms=1000.0),
    )
    boards = {name: Board("local", bench=bench_settings(SMALL)) for name in ("a", "b")}
    try:
        finals = retrain_winners({"a": best, "b": best}, data, settings, boards)
    finally:
        for board in boards.values():
            board.close()
    assert set(finals) == {"a", "b"}
    assert finals["a"].onnx == finals["b"].onnx  # trained once for both
    sha = hashlib.sha256(finals["a"].onnx).hexdigest()
    for final in finals.values():
        assert final.measurement.model.sha256 == sha  # its own measurement, on each board
        assert final.epochs == 2
        assert final.samples == 300
        assert final.proxy_accuracy == 0.75
        assert final.violations == ()
        assert final.to_dict()["model_sha256"] == sha
    off = SearchSettings(train=TrainSettings(final_epochs=0))
    assert retrain_winners({"a": best}, data, off, {}) == {}


def _card(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "targets" / "local" / "model_card.json").read_text()))


def test_a_search_ships_its_best_retrained_and_measured_again(tmp_path: Path) -> None:
    """best.onnx and the card are the retrained model's, with its own measurement; the card
    keeps the search's proxy accuracy beside the retrained model's test accuracy."""
    d = load_dataset("digits")
    space = SearchSpace(input_shape=(8, 8, 1), num_layers=1, layer_types=["fc"], fc_sizes=[8])
    runs = {}
    for final_epochs in (2, 0):
        out = tmp_path / f"final{final_epochs}"
        searcher = Searcher(
            space,
            strategy="random",
            trials=2,
            train=TrainSettings(epochs=1, final_epochs=final_epochs),
            out=out,
            bench={"min_time_s": 0.02},
            budgets={"latency_ms": 50.0},
        )
        model = searcher.search(d.x[:300], d.y[:300], test_data=d.x_test, test_labels=d.y_test)
        runs[final_epochs] = (out, model, searcher)
    out, model, searcher = runs[2]
    card = _card(out)
    assert searcher.result is not None
    best = searcher.result.best
    assert best is not None
    shipped = (out / "best.onnx").read_bytes()
    sha = hashlib.sha256(shipped).hexdigest()
    assert shipped == (out / "targets" / "local" / "model.onnx").read_bytes() == model.onnx
    assert shipped != (out / "models" / f"{best.hash}.onnx").read_bytes()  # not the trial's
    assert card["model_sha256"] == sha
    assert card["measurement"]["model"]["sha256"] == sha  # measured again, these bytes
    assert model.measurement is not None
    assert model.measurement.model.sha256 == sha
    assert card["final"]["epochs"] == 2
    assert card["final"]["samples"] == 300
    assert card["accuracy"]["proxy"] == best.accuracy == card["accuracy"]["validation"]
    test_accuracy = model.evaluate(d.x_test, d.y_test)[1]
    assert card["accuracy"]["final"] == card["accuracy"]["test"] == test_accuracy
    assert ModelCard.from_dict(card).final == card["final"]
    out, model, searcher = runs[0]  # final_epochs 0: the searched model ships, as before
    card = _card(out)
    assert searcher.result is not None
    best = searcher.result.best
    assert best is not None
    assert card["final"] is None
    assert set(card["accuracy"]) == {"validation", "test"}
    assert (out / "best.onnx").read_bytes() == (out / "models" / f"{best.hash}.onnx").read_bytes()
    old = {k: v for k, v in card.items() if k != "final"}  # a card from before: loads
    assert ModelCard.from_dict(old).final is None


def test_a_resumed_finished_run_measures_its_retrained_best_without_training_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = load_dataset("digits")
    space = SearchSpace(input_shape=(8, 8, 1), num_layers=1, layer_types=["fc"], fc_sizes=[8])
    out = tmp_path / "run"

    def search(resume: bool) -> tuple[bytes, Any]:
        searcher = Searcher(
            space,
            strategy="random",
            trials=2,
            train=TrainSettings(epochs=1, final_epochs=2),
            out=out,
            bench={"min_time_s": 0.02},
            resume=resume,
        )
        model = searcher.search(d.x[:300], d.y[:300])
        return (out / "best.onnx").read_bytes(), model

    first, _ = search(False)
    (kept,) = (out / "final").glob("*.onnx")
    assert kept.read_bytes() == first
    stamp = kept.stat().st_mtime_ns
    import search.loop.final as final_module

    def no_training(*args: Any, **kw: Any) -> Any:
        raise AssertionError("the kept retrained model was trained again")

    monkeypatch.setattr(final_module, "retrain", no_training)
    again, model = search(True)
    assert again == first  # the same bytes ship
    assert kept.stat().st_mtime_ns == stamp
    assert model.measurement is not None  # measured again, on this board
    # a kept file cut short by a kill is trained again, never shipped half-written
    kept.with_suffix(".json").write_text("{")
    assert final_module._kept(out / "final", kept.stem.split("-e")[0], 2) is None
