"""hwnas device agent: runs on a board, receives ONNX models, measures them honestly.

It imports only the standard library, NumPy and onnxruntime (pyserial in serial mode) and
nothing else of hwnas-bench, so it can be shipped to a board as a single zipapp.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
