"""``SearchSpace`` and ``Searcher``, as users import them::

from search import SearchSpace, Searcher

space = SearchSpace(input_shape=(8, 8, 1), num_layers=(1, 3), layer_types=["conv", "pool", "fc"])
searcher = Searcher(space, constraints={"latency_ms": 0.5}, trials=20, epochs=5)
best_model = searcher.search(x, y)
loss, accuracy = best_model.evaluate(x_test, y_test)
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch

from hwnas_bench import BenchSettings, Measurement, TargetSpec

from . import records
from .build import CandidateNet
from .data import class_count, labels, split, to_nchw
from .errors import InfeasibleBudgetError
from .evaluate import ROUNDS, Board, bench_settings
from .model_card import write_target_folder
from .onnx_export import from_onnx
from .records import TrialRecord
from .report import final_line, write_reports
from .run import OnTrial, Search, SearchResult, data_fingerprint
from .run_dir import RunDir
from .run_lock import run_dir_lock
from .settings import SearchSettings, check_constraints
from .space import Candidate, SearchSpace
from .strategies import Strategy, get_strategy
from .train import TrainSettings
from .train import evaluate as evaluate_net


class SearchedModel:
    """A trained, measured candidate: the search's answer."""

    def __init__(self, onnx: bytes, record: TrialRecord) -> None:
        self.onnx = onnx  #: the ONNX bytes that were measured (NCHW float32 input, batch 1)
        self.record = record
        self.module: CandidateNet = from_onnx(onnx)  #: the torch module, trained weights
        self.candidate: Candidate = self.module.candidate
        self.measurement: Measurement | None = record.measurement  #: measured on the target
        self.accuracy = record.accuracy  #: validation accuracy during the search

    def _x(self, x: Any) -> np.ndarray:
        return to_nchw(x, self.candidate.input_shape)

    def evaluate(self, x: Any, y: Any) -> tuple[float, float]:
        """(mean cross-entropy loss, accuracy in [0, 1]) on data in the search's layout."""
        return evaluate_net(self.module, self._x(x), labels(y))

    def predict(self, x: Any) -> np.ndarray:
        """Class indices for the samples of ``x``."""
        self.module.eval()
        with torch.no_grad():
            logits = self.module(torch.from_numpy(self._x(x)))
        return np.asarray(logits.argmax(1).numpy())

    def save(self, path: str | Path) -> Path:
        """Write the ONNX model (the one measured) to ``path``; a directory gets
        ``<candidate hash>.onnx`` inside it."""
        out = Path(path)
        if out.is_dir():
            out = out / f"{self.candidate.hash}.onnx"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(self.onnx)
        return out

    def __repr__(self) -> str:
        lat = self.record.latency_ms
        enc = self.candidate.encode()
        return f"SearchedModel({enc!r}, accuracy={self.accuracy}, latency_ms={lat})"


class Searcher:
    """Finds the most accurate candidate within the budgets, measured on ``target``.

    ``predictor``: skip training candidates that the measured per-layer table predicts over
    a budget by more than the predictor's own measured error (None: the strategy's default,
    on for ``evolution``; a skipped one is recorded as ``predicted_over_budget``).
    ``measure_rounds``: each candidate is measured as that many timed loops sharing
    ``bench.min_time_s``, and the median loop's Measurement is kept.
    ``storage`` (``postgresql://user@host/db``) and ``study`` (its name; ``study_name`` is
    the same): a study that searches on other hosts may share (docs/distributed.md);
    ``trials`` is then the study's total, and ``out`` holds this worker's measurements.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        target: str | TargetSpec = "local",
        strategy: str | Strategy = "evolution",
        constraints: dict[str, float] | None = None,
        latency_stat: str = "p50",
        trials: int = 40,
        epochs: int = 5,
        batch_size: int = 64,
        optimizer: str = "adam",
        lr: float | None = None,
        validation_split: float = 0.2,
        seed: int = 0,
        out: str | Path | None = None,
        storage: str | None = None,
        study_name: str = "search",
        study: str | None = None,
        resume: bool = False,
        bench: BenchSettings | dict[str, Any] | None = None,
        pruner: optuna.pruners.BasePruner | None = None,
        train_threads: int = 1,
        progress: bool | None = None,
        lease_timeout: float = 600.0,
        predictor: bool | None = None,
        measure_rounds: int = ROUNDS,
    ) -> None:
        self.space = space
        self.target = target
        self.strategy = get_strategy(strategy, seed=seed)
        self.settings = SearchSettings(
            strategy=self.strategy.name,
            predictor=self.strategy.predictor_default if predictor is None else predictor,
            strategy_options=self.strategy.options(),
            trials=trials,
            constraints=check_constraints(constraints),
            latency_stat=latency_stat,
            train=TrainSettings(optimizer, lr, epochs, batch_size, seed, train_threads),
            validation_split=validation_split,
            seed=seed,
        )
        self.settings.validate()
        self.bench = bench if isinstance(bench, BenchSettings) else bench_settings(bench)
        self.out = Path(out) if out is not None else None
        if storage is not None:
            from .shared import check_storage_url

            storage = check_storage_url(storage, "storage")
        self.storage, self.study_name = storage, study if study is not None else study_name
        self.resume, self.pruner = resume, pruner
        self.progress, self.lease_timeout = progress, lease_timeout
        self.measure_rounds = measure_rounds
        self.result: SearchResult | None = None
        #: called after each trial is told: (record, the result so far)
        self.on_trial: OnTrial | None = None
        #: called with the agent's progress reports while a candidate is measured
        self.on_measure_progress: Callable[[Mapping[str, Any]], None] | None = None

    def search(self, train_data: Any, train_labels: Any) -> SearchedModel:
        """Search, and return the best model. Raises InfeasibleBudgetError when no measured
        candidate meets the budget (``self.result`` holds the run all the same)."""
        y = labels(train_labels)
        space = self.space
        classes = class_count(y, space.num_classes)
        if space.num_classes is None:
            space = space.with_classes(classes)
        x = to_nchw(train_data, space.hwc)
        data = split(x, y, self.settings.validation_split, self.settings.seed)
        out = self.out or Path(tempfile.mkdtemp(prefix="hwnas-search-"))
        with run_dir_lock(out):
            run_dir = RunDir(out, self.storage, self.study_name)
            target = self.target.name if isinstance(self.target, TargetSpec) else self.target
            # what must match for a resume, and (without target, trials) for a shared study
            comparable = {
                "settings": self.settings.resume_key(),
                "space": space.to_dict(),
                "data": data_fingerprint(data),
                "bench": self.bench.to_wire(),
                "measure_rounds": self.measure_rounds,
            }
            run_dir.check(
                {**comparable, "trials": self.settings.trials, "target": target},
                resume=self.resume,
            )
            board = Board(
                self.target,
                bench=self.bench,
                lease_timeout=self.lease_timeout,
                rounds=self.measure_rounds,
            )
            board.on_progress = self.on_measure_progress
            try:
                with self._progress() as on_trial:
                    search = Search(
                        space,
                        data,
                        self.settings,
                        board=board,
                        strategy=self.strategy,
                        run_dir=run_dir,
                        pruner=self.pruner,
                        on_trial=on_trial,
                        study_record=comparable,
                    )
                    self.result = search.result
                    result = search.run_search()
            finally:
                board.close()
            write_reports(result)
            best = result.best
            if best is not None and not run_dir.model_path(best.hash).exists():
                # a shared study's best measured by another worker: its model is in that
                # worker's run directory; this one answers with the best it has here
                best = records.best(r for r in result.trials if run_dir.model_path(r.hash).exists())
                if best is not None:
                    shutil.copyfile(run_dir.model_path(best.hash), out / "best.onnx")
            if best is not None and best.measurement is not None:
                # the target's folder: the model and its card, for `hwnas deploy`
                write_target_folder(
                    out,
                    target,
                    model=run_dir.model_path(best.hash).read_bytes(),
                    record=best,
                    settings=self.settings,
                    board_name=result.board,
                    facts=result.facts,
                )
        if best is None:
            raise InfeasibleBudgetError(
                final_line(result)
                + ("" if result.best is None else " (none of them measured by this worker)"),
                smallest_ms=result.smallest_latency(),
                stat=self.settings.latency_stat,
            )
        return SearchedModel(run_dir.model_path(best.hash).read_bytes(), best)

    @contextlib.contextmanager
    def _progress(self) -> Iterator[OnTrial | None]:
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        if not show:
            yield self.on_trial
            return
        from .progress import progress_bar

        with progress_bar(self.settings.trials, self.settings.latency_stat) as bar:
            if self.on_trial is None:
                yield bar
                return
            extra = self.on_trial

            def both(rec: TrialRecord, result: SearchResult) -> None:
                bar(rec, result)
                extra(rec, result)

            yield both


__all__ = ["SearchSpace", "SearchedModel", "Searcher"]
