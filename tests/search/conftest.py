"""Small data for searches that must finish in seconds."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from search.training.data import Arrays, load_dataset


@pytest.fixture(scope="session", autouse=True)
def latency_table_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The searches of the suite share a user cache of latency tables of their own (the
    user's ~/.cache is left alone); a test that counts measurements sets its own."""
    path = tmp_path_factory.mktemp("latency-tables")
    before = os.environ.get("HWNAS_CACHE_DIR")
    os.environ["HWNAS_CACHE_DIR"] = str(path)
    yield path
    if before is None:
        os.environ.pop("HWNAS_CACHE_DIR", None)
    else:
        os.environ["HWNAS_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def digits() -> Arrays:
    return load_dataset("digits")


@pytest.fixture(scope="session")
def small_digits(digits: Arrays) -> tuple[np.ndarray, np.ndarray]:
    """400 training images: a 1-epoch candidate trains in a fraction of a second."""
    return digits.x[:400], digits.y[:400]
