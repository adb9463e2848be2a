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
      pareto.json, pareto.csv, pareto.png, summary.md, best.onnx, predictor.png
                           written at the end (a file whose content is unchanged is kept,
                           with its date: a resumed finished run rewrites nothing)
      targets/<target>/    model.onnx + model_card.json of each target (hwnas deploy);
                           with several targets also that target's pareto.*, summary.md,
                           latency_table.json and predictor.png

Files in it are written, appended and read through :mod:`search.files`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from ..files import owned_dir, read_file, read_present, scan, write_file

STUDY = "search"
#: the most of search.json that is read (ours are a few KB)
MAX_RECORD_BYTES = 4 << 20
#: what an SQLite database file starts with (an empty file is a new database too)
SQLITE_MAGIC = b"SQLite format 3\x00"


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
        owned_dir(out)
        scan(out)
        owned_dir(out / "models")
        self.storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
        if not self.shared:
            check_study_file(out / "study.db")
        from ..records import MeasurementLog

        self.log = MeasurementLog(out / "measurements.jsonl")

    def model_path(self, candidate_hash: str) -> Path:
        return self.out / "models" / f"{candidate_hash}.onnx"

    def target_dir(self, target: str) -> Path:
        """``targets/<target>/``: a target's model, card, and (several targets) reports."""
        from ..model_card import TARGETS, safe_name

        owned_dir(self.out / TARGETS)
        return owned_dir(self.out / TARGETS / safe_name(target))

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
            before = read_record(path)
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
        write_file(path, json.dumps(record, indent=2))


def read_record(path: Path) -> dict[str, Any]:
    """search.json's record; SettingsError for a file that is not one."""
    try:
        data = json.loads(read_file(path, MAX_RECORD_BYTES))
    except (OSError, ValueError, RecursionError) as exc:
        raise SettingsError(
            f"cannot resume: {path} is not a search's record ({type(exc).__name__}); "
            "choose another output directory"
        ) from None
    if not isinstance(data, dict):
        raise SettingsError(f"cannot resume: {path} is not a search's record (not an object)")
    return data


def check_study_file(path: Path) -> None:
    """A study.db that is not an SQLite database (or not a file of one name) is refused
    before Optuna opens it."""
    head = read_present(path, len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        raise SettingsError(
            f"{path} is not an SQLite study database; remove it or choose another output directory"
        )
