"""Compression chosen by measurement: int8 quantization (onnxruntime, calibrated, sensitive
layers kept in float) and physical channel pruning (Torch-Pruning), every variant measured
on the board and evaluated for accuracy; the fastest within the accuracy tolerance wins,
and only when it is faster than fp32 beyond the spread of the interleaved rounds
(:func:`search.compress.choose.faster_beyond_spread`); else fp32 stays.

::

    from search.compress import compress_searched, compress_onnx, CompressSettings

    result = compress_searched(best.module, split, Board("local"), out="runs/x/compressed")
    print(result.table())
    result.chosen.model  # the ONNX bytes to deploy
"""

from __future__ import annotations

from .choose import Variant, choose
from .data import Labelled, check_arrays, load_npz
from .errors import CalibrationDataError, CompressionError, NoPowerMeterError, NotAClassifierError
from .measure import Timing, measure_interleaved
from .model import ClassifierInfo, OrtClassifier, inspect_classifier
from .pipeline import compress_onnx, compress_searched, require_power_meter
from .result import CompressionResult, CompressSettings
from .sensitivity import Precision, calibrate_precision

__all__ = [
    "CalibrationDataError",
    "ClassifierInfo",
    "CompressSettings",
    "CompressionError",
    "CompressionResult",
    "Labelled",
    "NoPowerMeterError",
    "NotAClassifierError",
    "OrtClassifier",
    "Precision",
    "Timing",
    "Variant",
    "calibrate_precision",
    "check_arrays",
    "choose",
    "compress_onnx",
    "compress_searched",
    "inspect_classifier",
    "load_npz",
    "measure_interleaved",
    "require_power_meter",
]
