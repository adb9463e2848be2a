"""Installing a plugin distribution the way a user does, for the tests that load plugins
through the ``hwnas`` entry-point group."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path


def pip_install_target(package: Path, target: Path, dist: str) -> Path:
    """``pip install --target TARGET PACKAGE`` (no dependencies): a real dist-info with its
    entry points, importable once ``target`` is on sys.path. ``dist`` is the distribution's
    normalised name (``hwnas_plugin_acme``), checked to have landed."""
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation]
    subprocess.run([*command, "--target", str(target), str(package)], check=True)
    assert list(target.glob(f"{dist}-*.dist-info/entry_points.txt")), dist
    return target
