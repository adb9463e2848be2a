"""The run directory: where a search keeps its settings, study, measurements and models.

::

    runs/NAME/
      search.json          settings, space, data fingerprint (a resume must match them)
      study.db             the Optuna study (optuna-dashboard sqlite:///runs/NAME/study.db);
                           with --storage URL the study is in that database instead
      measurements.jsonl   every device measurement of this worker, one JSON line
      latency_table.json   the measured per-layer table (with the predictor or differentiable)
      models/<hash>.onnx   every measured candidate, with its trained weights
      providers.json       the execution provider of each target, and how it was chosen
      pareto.json, pareto.png, summary.md, best.onnx, predictor.png   written at the end
      targets/<target>/    model.onnx + model_card.json of each target (hwnas deploy);
                           with several targets also that target's pareto.*, summary.md,
                           latency_table.json and predictor.png
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import SettingsError
from .records import MeasurementLog

STUDY = "search"


def differences(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted name, value in a, value in b) of each value that differs between two
    JSON-like records."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(set(a) | set(b)):
            out += differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [(prefix.rstrip("."), a, b)] if a != b else []


class RunDir:
    def __init__(self, out: Path, storage: str | None = None, study_name: str = STUDY) -> None:
        self.out, self.study_name = out, study_name
        #: a study in a database that other workers may share (shared.py), not study.db
        self.shared = storage is not None
        out.mkdir(parents=True, exist_ok=True)
        (out / "models").mkdir(exist_ok=True)
        self.storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
        self.log = MeasurementLog(out / "measurements.jsonl")

    def model_path(self, candidate_hash: str) -> Path:
        return self.out / "models" / f"{candidate_hash}.onnx"

    def target_dir(self, target: str) -> Path:
        """``targets/<target>/``: a target's model, card, and (several targets) reports."""
        from .model_card import TARGETS, safe_name

        folder = self.out / TARGETS / safe_name(target)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def check(self, record: dict[str, Any], *, resume: bool) -> None:
        """A fresh run needs an empty directory; a resume needs the same settings."""
        path = self.out / "search.json"
        # a run that stopped before its first trial (a setting refused) holds nothing to keep
        started = (
            (self.out / "study.db").exists()
            or (self.out / "measurements.jsonl").exists()
            or any((self.out / "models").iterdir())
        )
        if path.exists() and started:
            before = json.loads(path.read_text())
            if not resume:
                raise SettingsError(
                    f"{self.out} already holds a search: resume it (--resume / resume=True) "
                    "or choose another output directory"
                )
            changed = [k for k, _, _ in differences(before, record) if k != "trials"]
            if changed:
                raise SettingsError(
                    f"cannot resume {self.out}: {', '.join(changed)} differ from the run's "
                    "(resume with the settings it was started with)"
                )
        path.write_text(json.dumps(record, indent=2))
