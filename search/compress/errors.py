"""The errors compression raises on purpose; each derives from the search's own roots."""

from __future__ import annotations

from ..errors import DataError, SearchError, SettingsError


class CompressionError(SearchError):
    """Compression could not go on: the fp32 model could not be measured on the board, or a
    variant could not be written."""


class CalibrationDataError(DataError):
    """A calibration or evaluation ``.npz`` that does not fit the model: ``x`` or ``y``
    missing, ``x`` of the wrong shape or holding NaN, labels out of the model's range."""


class NotAClassifierError(DataError):
    """An ONNX file compression cannot take: not readable, more than one input, an input that
    is not float32, or an output that is not ``[N, classes]``."""


class NoPowerMeterError(SettingsError):
    """``objective="energy"`` on a board without a power meter: there is nothing to choose by."""
