"""The search loop (its directory is run_dir.py's).

Per trial: the strategy proposes a candidate -> shapes and analytic cost checked against
the board's profile and the user's limits (rejected and counted before any training) ->
predicted from the measured table, and skipped if predicted far over budget (forecast.py,
with the predictor on) -> trained (a pruner stops hopeless runs) -> exported to ONNX ->
measured on the leased board -> objectives (accuracy, measured latency) and constraints
told to the study. On ``local`` training and measuring never overlap; on a remote board
candidate k is measured while k+1 trains.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from hwnas_bench import HwnasError, Measurement

from . import records, shared
from .build import build
from .cost import Limits, cost
from .data import Split
from .errors import SettingsError
from .evaluate import Board, latency_of
from .onnx_export import to_onnx
from .predict.table import TableError
from .records import TrialRecord
from .run_dir import RunDir
from .settings import SearchSettings
from .space import Candidate, InvalidCandidate, SearchSpace
from .strategies import SearchContext, Strategy
from .train import train

if TYPE_CHECKING:
    from .forecast import Forecast
#: validation accuracy, measured latency
DIRECTIONS = [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]

OnTrial = Callable[[TrialRecord, "SearchResult"], None]


def data_fingerprint(split: Split) -> str:
    h = hashlib.sha256()
    for arr in (split.x_train, split.y_train, split.x_val, split.y_val):
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


@dataclass
class SearchResult:
    """The whole run: every trial's record, the counts, the feasible Pareto front."""

    out: Path
    settings: SearchSettings
    trials: list[TrialRecord] = field(default_factory=list)
    board: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    #: the measured table and predictor, when the search used them
    forecast: Forecast | None = None

    @property
    def counts(self) -> dict[str, int]:
        return records.count(self.trials)

    @property
    def pareto(self) -> list[TrialRecord]:
        return records.pareto(self.trials)

    @property
    def best(self) -> TrialRecord | None:
        return records.best(self.trials)

    def smallest_latency(self) -> float | None:
        lat = [r.latency_ms for r in self.trials if r.outcome == records.MEASURED and r.latency_ms]
        return min(lat) if lat else None


class Search:
    def __init__(
        self,
        space: SearchSpace,
        data: Split,
        settings: SearchSettings,
        *,
        board: Board,
        strategy: Strategy,
        run_dir: RunDir,
        pruner: optuna.pruners.BasePruner | None = None,
        on_trial: OnTrial | None = None,
        study_record: dict[str, Any] | None = None,
    ) -> None:
        self.space, self.data, self.settings = space, data, settings
        #: what makes the numbers comparable (shared.py), without the board's facts
        self.study_record = study_record or {}
        self.heartbeat: shared.Heartbeat | None = None
        self.board, self.strategy, self.run = board, strategy, run_dir
        self.on_trial = on_trial
        chance = 1.0 / float(space.num_classes or 2)
        # Hopeless = still no better than 1.5x chance after a quarter of the epochs.
        self.pruner = pruner or optuna.pruners.ThresholdPruner(
            lower=1.5 * chance, n_warmup_steps=max(1, settings.train.epochs // 4)
        )
        self.result = SearchResult(run_dir.out, settings)
        self.limits = Limits()
        self.forecast: Forecast | None = None

    # -- set-up ---------------------------------------------------------------------------

    def _limits(self) -> Limits:
        profile = self.board.profile()
        c = self.settings.constraints
        return Limits(
            memory_mb=c.get("memory_mb"),
            flops=c.get("flops"),
            params=int(c["params"]) if "params" in c else None,
            profile_memory_mb=float(profile.memory.total_mb) if profile.memory.total_mb else None,
            profile=profile.name,
        )

    def _studies(self) -> tuple[optuna.Study, optuna.Study]:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = self.strategy.sampler(self.settings.trials, self.space)
        storage: str | optuna.storages.RDBStorage = self.run.storage
        if self.run.shared:
            storage = shared.open_storage(self.run.storage)
            record = {**self.study_record, "board": shared.speed_facts(self.board.facts)}
            study = shared.create_or_load(storage, self.run.study_name, sampler, DIRECTIONS, record)
            self.heartbeat = shared.Heartbeat(storage)
        else:
            study = optuna.create_study(
                storage=storage,
                sampler=sampler,
                study_name=self.run.study_name,
                directions=DIRECTIONS,
                load_if_exists=True,
            )
        curves = optuna.create_study(
            storage=storage,
            pruner=self.pruner,
            study_name=f"{self.run.study_name}.training",
            direction="maximize",
            load_if_exists=True,
        )
        return study, curves

    def _recover(self, study: optuna.Study, curves: optuna.Study) -> None:
        """Trials a killed process left running: failed, and their candidates redone first
        (anything they had measured is in measurements.jsonl and is not measured again)."""
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL)
            study.enqueue_trial(t.params, skip_if_exists=False)
        for t in curves.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            curves.tell(t.number, state=TrialState.FAIL)

    def _records(self, study: optuna.Study) -> list[TrialRecord]:
        return shared.study_records(study.get_trials(deepcopy=False), self.run.log)

    # -- the loop -------------------------------------------------------------------------

    def run_search(self) -> SearchResult:
        self.board.connect()
        self.result.facts, self.result.board = self.board.facts, self.board.board_name
        if "energy_mj" in self.settings.constraints and not self.board.has_power_meter:
            raise SettingsError(
                f"an energy budget needs a power meter, and {self.board.board_name} has none"
            )
        self.limits = self._limits()
        if self.settings.predictor or self.strategy.needs_table:
            from .forecast import Forecast

            self.forecast = self.result.forecast = Forecast(self.board, self.settings, self.run.out)
            self.forecast.replay(self.run.log.by_hash.values())
        study, curves = self._studies()
        if self.heartbeat is not None:  # a RUNNING trial may be a live worker's: only
            shared.fail_stale(study, self.heartbeat.storage)  # stale ones are failed
        else:
            self._recover(study, curves)
        self.result.trials = self._records(study)
        self.strategy.setup(
            SearchContext(
                space=self.space,
                data=self.data,
                settings=self.settings,
                board=self.board,
                out=self.run.out,
                limits=self.limits,
                table=self.forecast.table if self.forecast else None,
                predictor=self.forecast.predictor if self.forecast else None,
            )
        )
        overlap = not self.board.is_local
        pool = ThreadPoolExecutor(max_workers=1) if overlap else None
        pending: tuple[optuna.Trial, TrialRecord, Future[Measurement]] | None = None
        try:
            while self._more(study):
                if self.strategy.finished(self.result.trials):
                    break
                trial = self._ask(study)
                if trial is None:  # the study had its trials when this worker asked
                    continue
                record, model = self._prepare(trial, curves)
                if model is None:
                    self._tell(study, trial, record)
                    continue
                if pool is None:
                    self._finish(study, trial, record, self._measure_now(record, model))
                    continue
                if pending is not None:
                    self._finish(study, *pending)
                pending = (trial, record, pool.submit(self._measure, record, model))
                if pending is not None and not self._more(study, wait=False):
                    self._finish(study, *pending)
                    pending = None
            if pending is not None:
                self._finish(study, *pending)
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
            if self.heartbeat is not None:
                self.heartbeat.close()
        self.result.trials = self._records(study)
        return self.result

    def _more(self, study: optuna.Study, *, wait: bool = True) -> bool:
        """True while the study wants another trial. A shared study's ``trials`` is the
        study's total: at it, a worker waits while other workers' trials run, as one of
        them may die and its trial be queued again (stale ones are failed here)."""
        while True:
            if self.heartbeat is not None:
                shared.fail_stale(study, self.heartbeat.storage)
            if self._budget_used(study) < self.settings.trials:
                return True
            if not wait or self.heartbeat is None:
                return False
            if not shared.running_elsewhere(study, self.heartbeat.ids):
                return False
            time.sleep(self.heartbeat.interval)

    def _ask(self, study: optuna.Study) -> optuna.Trial | None:
        """The next trial; with a shared study, marked with this worker, beating, and None
        (told FAIL as surplus) when other workers took the last trials meanwhile."""
        with shared.quiet():
            trial = study.ask()
        if self.heartbeat is None:
            return trial
        self.heartbeat.add(trial._trial_id)
        trial.set_user_attr("worker", shared.worker_id())
        trial.set_user_attr("board", self.board.board_name)
        if self._budget_used(study, before=trial.number) < self.settings.trials:
            return trial
        trial.set_user_attr("outcome", shared.SURPLUS)
        trial.set_user_attr("reason", "the study had its trials when this worker asked")
        study.tell(trial, state=TrialState.FAIL)
        self.heartbeat.discard(trial._trial_id)
        return None

    def _budget_used(self, study: optuna.Study, before: int | None = None) -> int:
        trials = study.get_trials(deepcopy=False)
        return shared.budget_used(trials, self.settings.trials, before)

    def _prepare(
        self, trial: optuna.Trial, curves: optuna.Study
    ) -> tuple[TrialRecord, bytes | None]:
        """Propose, check, train and export; (record, ONNX bytes to measure or None)."""
        candidate = self.strategy.propose(trial, self.space)
        rec = TrialRecord(trial.number, candidate.encode(), candidate.hash, records.MEASURED)
        try:
            c = cost(candidate)
        except InvalidCandidate as exc:
            rec.outcome, rec.reason = records.INVALID, str(exc)
            return rec, None
        rec.cost = c.to_dict()
        violated = self.limits.violated(c)
        if violated is not None:
            rec.outcome, rec.reason = f"pruned_{violated}", self.limits.describe(violated, c)
            return rec, None
        cached = self.run.log.get(candidate.hash)
        if cached is not None:
            entry, m = cached
            done = {r.hash for r in self.result.trials if r.outcome == records.MEASURED}
            rec.outcome = records.DUPLICATE if candidate.hash in done else records.MEASURED
            rec.accuracy, rec.val_loss = entry["accuracy"], entry["val_loss"]
            predicted = entry.get("predicted")
            rec.predicted = predicted if isinstance(predicted, dict) else None
            if rec.outcome == records.MEASURED:  # measured by a killed process, not yet told
                rec.train_s = entry.get("train_s")
            self._score(rec, m)
            return rec, None
        if self.forecast is not None:
            try:
                prediction = self.forecast.predict(candidate)
            except (HwnasError, TableError) as exc:  # a one-layer measurement failed: this
                # trial fails with the reason, the search goes on
                rec.outcome = records.FAILED
                rec.reason = f"latency table: {str(exc).splitlines()[0]}"
                return rec, None
            rec.predicted = prediction.to_dict()
            skip = self.forecast.over_budget(prediction)
            if skip is not None:
                rec.outcome, rec.reason = records.PREDICTED_OVER, skip
                return rec, None
        try:
            model = self._train(candidate, rec, curves)
        except (RuntimeError, ValueError) as exc:  # torch errors (out of memory and the like)
            rec.outcome, rec.reason = records.FAILED, f"training: {type(exc).__name__}: {exc}"
            return rec, None
        return rec, model

    def _train(self, candidate: Candidate, rec: TrialRecord, curves: optuna.Study) -> bytes | None:
        with shared.quiet():
            curve = curves.ask()
        net = build(candidate, seed=self.settings.seed)

        def on_epoch(epoch: int, accuracy: float) -> bool:
            curve.report(accuracy, epoch)
            return bool(curve.should_prune())

        result = train(net, self.data, self.settings.train, on_epoch=on_epoch)
        rec.accuracy, rec.val_loss, rec.train_s = (
            result.val_accuracy,
            result.val_loss,
            round(result.seconds, 3),
        )
        if result.stopped_early:
            curves.tell(curve, state=TrialState.PRUNED)
            rec.outcome = records.PRUNED_TRAINING
            rec.reason = (
                f"validation accuracy {result.val_accuracy:.3f} after {result.epochs_run} epochs"
            )
            return None
        curves.tell(curve, result.val_accuracy)
        start = time.perf_counter()
        model = to_onnx(net)
        rec.export_s = round(time.perf_counter() - start, 5)
        self.run.model_path(candidate.hash).write_bytes(model)
        return model

    def _measure(self, rec: TrialRecord, model: bytes) -> Measurement:
        return self.board.measure(model, name=f"trial {rec.number} {rec.hash}")

    def _measure_now(self, rec: TrialRecord, model: bytes) -> Future[Measurement]:
        future: Future[Measurement] = Future()
        try:
            future.set_result(self._measure(rec, model))
        except HwnasError as exc:
            future.set_exception(exc)
        return future

    def _finish(
        self, study: optuna.Study, trial: optuna.Trial, rec: TrialRecord, fut: Future[Measurement]
    ) -> None:
        try:
            m = fut.result()
        except HwnasError as exc:  # the board dropped out, was busy...: fail, go on
            rec.outcome, rec.reason = records.FAILED, f"measurement: {str(exc).splitlines()[0]}"
            self._tell(study, trial, rec)
            return
        self.run.log.append(
            {
                "trial": rec.number,
                "hash": rec.hash,
                "candidate": rec.candidate,
                "accuracy": rec.accuracy,
                "val_loss": rec.val_loss,
                "train_s": rec.train_s,
                "cost": rec.cost,
                "predicted": rec.predicted,
                "measurement": m.to_dict(),
            }
        )
        self._score(rec, m)
        if self.forecast is not None:
            self.forecast.observe(rec, Candidate.decode(rec.candidate))
        self._tell(study, trial, rec)

    def _score(self, rec: TrialRecord, m: Measurement) -> None:
        rec.measurement = m
        rec.latency_ms = latency_of(m, self.settings.latency_stat)
        rec.energy_mj = m.power.energy_mj
        budgets = self.settings.constraints
        over = [
            rec.latency_ms > budgets.get("latency_ms", float("inf")),
            rec.energy_mj is not None and rec.energy_mj > budgets.get("energy_mj", float("inf")),
        ]
        rec.feasible = not any(over)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, rec: TrialRecord) -> None:
        for key, value in rec.attrs().items():
            trial.set_user_attr(key, value)
        if rec.measurement is not None:  # so any host can report from the study alone
            trial.set_user_attr("measurement", shared.measurement_attr(rec.measurement))
        if rec.outcome == records.MEASURED:
            budgets = self.settings.constraints
            if "latency_ms" in budgets:
                trial.set_constraint("latency_ms", (rec.latency_ms or 0.0) - budgets["latency_ms"])
            if "energy_mj" in budgets:
                trial.set_constraint("energy_mj", (rec.energy_mj or 0.0) - budgets["energy_mj"])
            assert rec.accuracy is not None
            assert rec.latency_ms is not None
            study.tell(trial, [rec.accuracy, rec.latency_ms])
        elif rec.outcome == records.FAILED:
            study.tell(trial, state=TrialState.FAIL)
        else:  # pruned, invalid, and repeats: a repeat's figures are in its attributes; told
            # as values it would fill NSGA-II's population with copies of one candidate
            study.tell(trial, state=TrialState.PRUNED)
        if self.heartbeat is not None:
            self.heartbeat.discard(trial._trial_id)
        self.result.trials.append(rec)
        frozen = study.get_trials(deepcopy=False)[trial.number]
        self.strategy.after_trial(frozen, rec)
        if self.on_trial is not None:
            self.on_trial(rec, self.result)
