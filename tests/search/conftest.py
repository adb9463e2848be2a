"""Small data for searches that must finish in seconds."""

from __future__ import annotations

import numpy as np
import pytest

from search.data import Arrays, load_dataset


@pytest.fixture(scope="session")
def digits() -> Arrays:
    return load_dataset("digits")


@pytest.fixture(scope="session")
def small_digits(digits: Arrays) -> tuple[np.ndarray, np.ndarray]:
    """400 training images: a 1-epoch candidate trains in a fraction of a second."""
    return digits.x[:400], digits.y[:400]
