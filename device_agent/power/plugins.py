"""Power readers from plugins: modules named on the agent's command line (--power-plugin).

A plugin module defines ``discover(root, run_command) -> (meters, reasons)``; the loop of
:func:`device_agent.power.probe` serves it as it serves the built-in finders. It is
imported here, on the board, and may import only the standard library and device_agent.
A plugin that fails to import or raises becomes a reason, never a crash.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ._io import CommandRunner
from .meter import PowerMeter
from .probe import Found


def find_plugin(module: str, root: Path, run_command: CommandRunner) -> Found:
    try:
        discover = importlib.import_module(module).discover
        meters, reasons = discover(root, run_command)
    except Exception as exc:  # a third party's bug must not take the agent down
        return [], [f"plugin {module}: {type(exc).__name__}: {exc}"]
    bad = [m for m in meters if not isinstance(m, PowerMeter)]
    if bad:
        return [], [f"plugin {module}: discover() returned {type(bad[0]).__name__}, not PowerMeter"]
    return list(meters), [f"plugin {module}: {r}" for r in reasons]
