"""Fixtures for the power tests: real files in fake sysfs trees, never patched open()."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent / "data" / "power"

TreeMaker = Callable[[Mapping[str, str]], Path]


@pytest.fixture
def make_tree(tmp_path: Path) -> TreeMaker:
    """Write ``{"/sys/...": "content"}`` under a fresh root and return the root."""
    made: list[Path] = []

    def make(files: Mapping[str, str]) -> Path:
        root = tmp_path / f"root{len(made)}"
        made.append(root)
        for absolute, content in files.items():
            path = root / absolute.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content + "\n")
        root.mkdir(exist_ok=True)
        return root

    return make


@pytest.fixture
def pmic_output() -> str:
    return (DATA / "rpi5_pmic_read_adc.txt").read_text()
