"""A trial record's cost and prediction are typed (Cost, Prediction) in memory; the study's
user attributes they are stored as are the dicts they always were, and old ones load."""

from __future__ import annotations

import json

from search import records
from search.cost import Cost
from search.predict import Prediction
from search.records import BoardFigures, TrialRecord

COST = Cost(params=120, flops=4_000, peak_activation_bytes=2_048)
PREDICTION = Prediction(1.5, None, 1.2, None, "scale")


def test_attrs_keep_the_dicts_and_load_back_typed() -> None:
    rec = TrialRecord(
        4, "c", "h", records.MEASURED, cost=COST, predicted=PREDICTION, latency_ms=1.7
    )
    attrs = rec.attrs()
    assert attrs["cost"] == COST.to_dict()
    assert attrs["predicted"] == PREDICTION.to_dict()
    json.dumps(attrs)  # what Optuna stores
    again = TrialRecord.from_attrs(4, json.loads(json.dumps(attrs)), None)
    assert again.cost == COST
    assert again.predicted == PREDICTION
    assert again.predicted_latency_ms == 1.5
    assert again.attrs() == attrs


def test_a_record_without_cost_stores_an_empty_one_as_before() -> None:
    rec = TrialRecord(0, "c", "h", records.INVALID, reason="too small")
    assert rec.cost is None
    assert rec.attrs()["cost"] == {}
    assert rec.cost_figures == {}
    assert "predicted" not in rec.attrs()
    assert TrialRecord.from_attrs(0, rec.attrs(), None).cost is None


def test_cost_still_reads_like_its_dict() -> None:
    assert COST["memory_mb"] == COST.to_dict()["memory_mb"]
    assert dict(COST) == COST.to_dict()
    assert Cost.from_dict(COST.to_dict()) == COST


def test_old_or_hand_written_attrs_do_not_crash() -> None:
    attrs = {
        "candidate": "c",
        "hash": "h",
        "outcome": records.MEASURED,
        "cost": {"params": "many"},  # not a cost: dropped
        "predicted": {"latency_ms": -1},  # not a prediction: dropped
        "boards": {"b": {"predicted": PREDICTION.to_dict(), "latency_ms": 2.0}},
    }
    rec = TrialRecord.from_attrs(1, attrs, None)
    assert rec.cost is None
    assert rec.predicted is None
    assert rec.boards["b"].predicted == PREDICTION
    assert rec.boards["b"].attrs()["predicted"] == PREDICTION.to_dict()


def test_view_of_a_target_takes_its_prediction() -> None:
    rec = TrialRecord(2, "c", "h", records.MEASURED, predicted=PREDICTION)
    other = Prediction(3.0, 0.5, 2.5, 0.4, "line", "scale")
    rec.boards = {"a": BoardFigures(predicted=PREDICTION), "b": BoardFigures(predicted=other)}
    assert rec.view("b").predicted == other
    assert rec.view("b").predicted_latency_ms == 3.0
