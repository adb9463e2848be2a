"""The latency predictor: a per-layer lookup table measured on the board, and a correction
fitted on the whole-model measurements the search makes."""

from __future__ import annotations

from .fit import Fit
from .ops import OVERHEAD, LayerOp, candidate_ops, layer_model
from .plot import plot_predictions
from .predictor import Observation, Prediction, Predictor, PredictorError
from .store import TableCacheWarning, cache_root, fingerprint
from .table import LatencyTable, TableEntry, TableError

__all__ = [
    "OVERHEAD",
    "Fit",
    "LatencyTable",
    "LayerOp",
    "Observation",
    "Prediction",
    "Predictor",
    "PredictorError",
    "TableCacheWarning",
    "TableEntry",
    "TableError",
    "cache_root",
    "candidate_ops",
    "fingerprint",
    "layer_model",
    "plot_predictions",
]
