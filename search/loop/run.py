"""The search loop (its directory is run_dir.py's).

Per trial: the strategy proposes a candidate -> shapes and analytic cost checked against
the board's profile and the user's limits (rejected and counted before any training) ->
predicted from the measured table, and skipped if predicted far over budget (forecast.py,
with the predictor on) -> trained (a pruner stops hopeless runs) -> exported to ONNX ->
measured on the leased board -> objectives (accuracy, measured latency, measured energy
when it is one) and constraints told to the study (objectives.py). On ``local`` training
and measuring never overlap; on a remote board candidate k is measured while k+1 trains.

With several targets the one trained model is measured on each board in turn, each
board's figures and outcome are kept apart (several.py, ``TrialRecord.boards``), and the
study gets one latency objective per board (and one energy objective per board).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState
from sqlalchemy.exc import SQLAlchemyError

from hwnas_bench import HwnasError, Measurement

from .. import records
from ..build import build
from ..cost import Limits, cost
from ..errors import SettingsError
from ..files import MAX_MODEL_BYTES, read_file, write_file
from ..measure import Board
from ..measure.confidence import Decided, Verdict
from ..onnx_export import to_onnx
from ..predict.predictor import Prediction
from ..predict.table import TableError
from ..records import BoardFigures, TrialRecord
from ..settings import SearchSettings
from ..space import Candidate, InvalidCandidate, SearchSpace
from ..strategies import SearchContext, Strategy
from ..training.data import Split
from ..training.train import train
from . import objectives, several, shared
from .final import retrain_winners
from .report import resumed_line
from .result import SearchResult, TargetState, data_fingerprint
from .run_dir import RunDir

if TYPE_CHECKING:
    from .forecast import Forecast

OnTrial = Callable[[TrialRecord, "SearchResult"], None]
#: told once, before the first trial, what a resumed run kept (``resumed runs/x: kept ...``)
OnResume = Callable[[str], None]
#: target name -> its measurement of one candidate (every round, and the side of the
#: latency budget they put it on), or the board's error
Measured = dict[str, "Decided | HwnasError"]

__all__ = ["OnResume", "OnTrial", "Search", "SearchResult", "data_fingerprint"]


def round_fields(decided: Decided) -> dict[str, Any]:
    """A measurement log entry's record of every round (its latency statistics) and of
    the verdict they gave (none without a latency budget)."""
    out: dict[str, Any] = {
        "rounds": [
            {"latency": dataclasses.asdict(r.latency), "energy_mj": r.power.energy_mj}
            for r in decided.rounds
        ]
    }
    if decided.verdict is not None:
        out["latency_verdict"] = decided.verdict.to_dict()
    return out


def _say(line: str) -> None:
    print(f"hwnas: {line}", file=sys.stderr, flush=True)


class Search:
    """One search over one or several targets (``boards``: target name -> Board, in the
    order given; the first is the one the single-target fields of records describe)."""

    def __init__(
        self,
        space: SearchSpace,
        data: Split,
        settings: SearchSettings,
        *,
        boards: dict[str, Board],
        strategy: Strategy,
        run_dir: RunDir,
        pruner: optuna.pruners.BasePruner | None = None,
        on_trial: OnTrial | None = None,
        study_record: dict[str, Any] | None = None,
        provider: str | None = None,
    ) -> None:
        if not boards:
            raise SettingsError("a search needs at least one target")
        self.space, self.data, self.settings = space, data, settings
        #: what makes the numbers comparable (shared.py), without the board's facts
        self.study_record = study_record or {}
        self.heartbeat: shared.Heartbeat | None = None
        self.boards, self.strategy, self.run = boards, strategy, run_dir
        self.names = list(boards)
        self.board = boards[self.names[0]]
        #: the execution provider the caller named (else each board's is chosen)
        self.provider = provider
        #: several targets: each one's figures are kept and logged under its name
        self.several = len(boards) > 1
        self.on_trial = on_trial
        #: a resumed run's line (default: to stderr); None says nothing
        self.on_resume: OnResume | None = _say
        chance = 1.0 / float(space.num_classes or 2)
        # Hopeless = still no better than 1.5x chance after a quarter of the epochs.
        self.pruner = pruner or optuna.pruners.ThresholdPruner(
            lower=1.5 * chance, n_warmup_steps=max(1, settings.train.epochs // 4)
        )
        self.result = SearchResult(run_dir.out, settings)
        self.limits = Limits()
        self.target_limits: dict[str, Limits] = {}
        self.forecasts: dict[str, Forecast] = {}

    @property
    def forecast(self) -> Forecast | None:
        """The first target's table and predictor (the only one of a one-target search)."""
        return self.forecasts.get(self.names[0])

    def _log_target(self, name: str) -> str | None:
        return name if self.several else None

    # -- set-up ---------------------------------------------------------------------------

    def _limits(self) -> Limits:
        """The user's analytic limits and the board's memory (with several targets, the
        largest board's: a candidate that fits on none is not trained; one too big for some
        boards only is kept from those by :func:`several.mark_unfit`)."""
        profiles = {n: b.profile() for n, b in self.boards.items()}
        memory = [p.memory.total_mb for p in profiles.values()]
        largest = max(profiles.values(), key=lambda p: p.memory.total_mb or 0)
        b = self.settings.budgets
        return Limits(
            memory_mb=b.memory_mb,
            flops=b.flops,
            params=int(b.params) if b.params is not None else None,
            profile_memory_mb=float(max(memory)) if all(memory) else None,
            profile=largest.name,
        )

    def metric_names(self) -> list[str]:
        """The study's objective names, as optuna-dashboard shows them: ``accuracy``,
        ``latency_ms`` and, with energy as an objective, ``energy_mj`` (several targets:
        ``latency_ms[<target>]`` each, then ``energy_mj[<target>]`` each)."""
        figures = ["latency_ms"] + (["energy_mj"] if self.settings.energy_objective else [])
        if not self.several:
            return ["accuracy", *figures]
        return ["accuracy", *(f"{f}[{n}]" for f in figures for n in self.names)]

    def _studies(self) -> tuple[optuna.Study, optuna.Study]:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = self.strategy.sampler(self.settings.trials, self.space)
        storage: str | optuna.storages.RDBStorage = self.run.storage
        directions = objectives.directions(len(self.names), energy=self.settings.energy_objective)
        names = self.metric_names()
        if self.run.shared:
            storage = shared.open_storage(self.run.storage)
            record = {**self.study_record, "board": shared.speed_facts(self.board.facts)}
            study = shared.create_or_load(
                storage, self.run.study_name, sampler, directions, record, metric_names=names
            )
            self.heartbeat = shared.Heartbeat(storage)
            return study, self._curves(storage)
        try:
            study = optuna.create_study(
                storage=storage,
                sampler=sampler,
                study_name=self.run.study_name,
                directions=directions,
                load_if_exists=True,
            )
            if study.metric_names is None and len(study.directions) == len(names):
                with shared.quiet():  # set on a study made before they were
                    study.set_metric_names(names)
            return study, self._curves(storage)
        except SQLAlchemyError as exc:  # a study.db that SQLite cannot read
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SettingsError(
                f"cannot open {self.run.out / 'study.db'}: {first[:200]}; remove it or "
                "choose another output directory"
            ) from None

    def _curves(self, storage: str | optuna.storages.RDBStorage) -> optuna.Study:
        return optuna.create_study(
            storage=storage,
            pruner=self.pruner,
            study_name=f"{self.run.study_name}.training",
            direction="maximize",
            load_if_exists=True,
        )

    def _recover(self, study: optuna.Study, curves: optuna.Study) -> None:
        """Trials a killed process left running: failed, and their candidates redone first
        (anything they had measured is in measurements.jsonl and is not measured again)."""
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL)
            study.enqueue_trial(t.params, skip_if_exists=False)
        for t in curves.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            curves.tell(t.number, state=TrialState.FAIL)

    def _records(self, study: optuna.Study) -> list[TrialRecord]:
        targets = self.names if self.several else None
        return shared.study_records(study.get_trials(deepcopy=False), self.run.log, targets)

    def _connect(self) -> None:
        """Lease each target once: its facts, its execution provider, its table."""
        from .providers import (
            CHOICES_FILE,
            ProviderChoice,
            load_choices,
            provider_for,
            save_choices,
        )

        kept = load_choices(self.run.out)
        if not (self.run.out / CHOICES_FILE).exists() and self.run.log.path.exists():
            # a run measured before providers were chosen per board: it goes on as it was
            kept = {
                n: ProviderChoice(b.bench.provider, "kept: the run measured with it before")
                for n, b in self.boards.items()
            }
        for name, board in self.boards.items():
            board.connect()
            state = self.result.targets.setdefault(name, TargetState())
            state.board, state.facts = board.board_name, board.facts
            if self.settings.wants_energy:  # an energy budget or objective
                board.want_energy()  # no meter: refused here, naming the board, before training
            state.provider = provider_for(
                board, self.space, kept=kept.get(name), given=self.provider
            )
        save_choices(self.run.out, {n: s.provider for n, s in self.result.targets.items()})
        self.result.board, self.result.facts = self.board.board_name, self.board.facts
        if self.settings.predictor or self.strategy.needs_table:
            from .forecast import Forecast

            for name, board in self.boards.items():
                folder = self.run.target_dir(name) if self.several else self.run.out
                forecast = Forecast(board, self.settings, folder)
                forecast.replay(self.run.log.entries(self._log_target(name)))
                self.forecasts[name] = self.result.targets[name].forecast = forecast
            self.result.forecast = self.forecast

    # -- the loop -------------------------------------------------------------------------

    def run_search(self) -> SearchResult:
        self._connect()
        self.limits, self.target_limits = self._limits(), several.target_limits(self.boards)
        study, curves = self._studies()
        if self.heartbeat is not None:  # a RUNNING trial may be a live worker's: only
            shared.fail_stale(study, self.heartbeat.storage)  # stale ones are failed
        else:
            self._recover(study, curves)
        self.result.trials = self._records(study)
        if self.result.trials:
            used = shared.budget_used(study.get_trials(deepcopy=False), self.settings.trials)
            self.result.finished_before = used >= self.settings.trials and not self.run.shared
            if self.on_resume is not None:
                self.on_resume(resumed_line(self.result, self.settings.trials - used))
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
        # training and measuring never overlap on this machine
        overlap = not any(b.is_local for b in self.boards.values())
        pool = ThreadPoolExecutor(max_workers=1) if overlap else None
        pending: tuple[optuna.Trial, TrialRecord, Future[Measured]] | None = None
        try:
            while self._more(study):
                if self.strategy.finished(self.result.trials):
                    break
                trial = self._ask(study)
                if trial is None:  # the study had its trials when this worker asked
                    continue
                record, model, todo = self._prepare(trial, curves)
                if model is None:
                    self._tell(study, trial, record)
                    continue
                if pool is None:
                    self._finish(study, trial, record, self._measure_now(record, model, todo))
                    continue
                if pending is not None:
                    self._finish(study, *pending)
                pending = (trial, record, pool.submit(self._measure, record, model, todo))
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
        self._retrain_winners()
        return self.result

    def _retrain_winners(self) -> None:
        """Each target's best (with its model here) retrained on train+validation and
        measured again on that board: what ships (final.py; ``final_epochs`` 0: none)."""
        bests = {}
        for name in self.names:
            best = self.result.for_target(name).best
            # a shared study's best measured by another worker has its model elsewhere
            here = best is not None and self.run.model_path(best.hash).exists()
            if best is not None and best.measurement is not None and here:
                bests[name] = best
        if not bests or self.settings.train.final_epochs_run < 1:
            return
        for name, final in retrain_winners(
            bests, self.data, self.settings, self.boards, log=_say, keep=self.run.out / "final"
        ).items():
            self.result.targets[name].final = final

    def _more(self, study: optuna.Study, *, wait: bool = True) -> bool:
        return shared.wants_more(study, self.heartbeat, self.settings.trials, wait=wait)

    def _ask(self, study: optuna.Study) -> optuna.Trial | None:
        return shared.ask(study, self.heartbeat, self.settings.trials, self.board.board_name)

    def _prepare(
        self, trial: optuna.Trial, curves: optuna.Study
    ) -> tuple[TrialRecord, bytes | None, list[str]]:
        """Propose, check, train and export: (record, ONNX bytes to measure or None, the
        targets to measure them on)."""
        candidate = self.strategy.propose(trial, self.space)
        rec = TrialRecord(trial.number, candidate.encode(), candidate.hash, records.MEASURED)
        try:
            c = cost(candidate)
        except InvalidCandidate as exc:
            rec.outcome, rec.reason = records.INVALID, str(exc)
            return rec, None, []
        rec.cost = c
        violated = self.limits.violated(c)
        if violated is not None:
            rec.outcome, rec.reason = f"pruned_{violated}", self.limits.describe(violated, c)
            return rec, None, []
        unfit = several.mark_unfit(rec, c, self.target_limits)
        fits = [n for n in self.names if n not in unfit]
        logged = {n: self.run.log.get(candidate.hash, self._log_target(n)) for n in fits}
        todo = [n for n, entry in logged.items() if entry is None]
        model_file = self.run.model_path(candidate.hash)
        if not todo or (len(todo) < len(fits) and model_file.exists()):
            # measured before (by a killed process, or on some targets only): reused
            return self._reuse(rec, candidate, logged, todo, model_file)
        if self.forecasts:
            try:
                predictions = {n: self.forecasts[n].predict(candidate) for n in fits}
            except (HwnasError, TableError) as exc:  # a one-layer measurement failed: this
                # trial fails with the reason, the search goes on
                rec.outcome = records.FAILED
                rec.reason = f"latency table: {str(exc).splitlines()[0]}"
                return rec, None, []
            several.keep_predictions(rec, predictions, self.names)
            skip = several.skip_reason(
                {n: self.forecasts[n].over_budget(p) for n, p in predictions.items()}
            )
            if skip is not None:
                rec.outcome, rec.reason = records.PREDICTED_OVER, skip
                return rec, None, []
        try:
            model = self._train(candidate, rec, curves)
        except (RuntimeError, ValueError) as exc:  # torch errors (out of memory and the like)
            rec.outcome, rec.reason = records.FAILED, f"training: {type(exc).__name__}: {exc}"
            return rec, None, []
        return rec, model, fits

    def _reuse(
        self,
        rec: TrialRecord,
        candidate: Candidate,
        logged: dict[str, tuple[dict[str, Any], Measurement] | None],
        todo: list[str],
        model_file: Path,
    ) -> tuple[TrialRecord, bytes | None, list[str]]:
        """A candidate this run measured before: a repeat (not measured again), or one a
        killed process measured on some or all targets (the rest measured now, from its
        saved model: not trained again)."""
        entry = next(e for e in logged.values() if e is not None)[0]
        done = {
            r.hash
            for r in self.result.trials
            if r.outcome == records.MEASURED
            or any(f.outcome == records.MEASURED for f in r.boards.values())
        }
        repeat = candidate.hash in done
        rec.outcome = records.DUPLICATE if repeat else records.MEASURED
        rec.accuracy, rec.val_loss = entry["accuracy"], entry["val_loss"]
        if not repeat:  # measured by a killed process, not yet told
            rec.train_s = entry.get("train_s")
        for name, cached in logged.items():
            if cached is not None:
                predicted = records.read_prediction(cached[0].get("predicted"))
                verdict = Verdict.from_dict(cached[0].get("latency_verdict"))
                self._score(rec, name, cached[1], predicted, verdict)
        if repeat or not todo:
            several.settle(rec, self.names)
            return rec, None, []
        for name in todo:  # each target's own prediction, made before its measurement
            forecast = self.forecasts.get(name)
            if forecast is None:
                continue
            try:
                figures = rec.boards.setdefault(name, BoardFigures())
                figures.predicted = forecast.predict(candidate)
            except (HwnasError, TableError):
                pass  # no prediction for this one: it is measured all the same
        return rec, read_file(model_file, MAX_MODEL_BYTES), todo

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
        write_file(self.run.model_path(candidate.hash), model)
        return model

    def _measure(self, rec: TrialRecord, model: bytes, todo: list[str]) -> Measured:
        """The model on each target in turn (never two at once: boards of one farm may be
        one machine); a board's error is kept, and the others are still measured."""
        out: Measured = {}
        budget, stat = self.settings.budgets.latency_ms, self.settings.latency_stat
        for name in todo:
            try:
                out[name] = self.boards[name].measure_decided(
                    model, budget, stat, name=f"trial {rec.number} {rec.hash}"
                )
            except HwnasError as exc:
                out[name] = exc
        return out

    def _measure_now(self, rec: TrialRecord, model: bytes, todo: list[str]) -> Future[Measured]:
        future: Future[Measured] = Future()
        future.set_result(self._measure(rec, model, todo))
        return future

    def _finish(
        self, study: optuna.Study, trial: optuna.Trial, rec: TrialRecord, fut: Future[Measured]
    ) -> None:
        failed = []
        for name, decided in fut.result().items():
            if isinstance(decided, HwnasError):  # the board dropped out, was busy...: fail, go on
                why = f"measurement: {str(decided).splitlines()[0]}"
                failed.append(f"{name}: {why}" if self.several else why)
                if self.several:
                    figures = rec.boards.setdefault(name, BoardFigures())
                    figures.outcome, figures.reason = records.FAILED, why
                continue
            m, verdict = decided.measurement, decided.verdict
            # each target's own prediction (several targets), never another's
            predicted = (
                rec.boards.get(name, BoardFigures()).predicted if self.several else (rec.predicted)
            )
            self.run.log.append(
                {
                    "trial": rec.number,
                    "hash": rec.hash,
                    "candidate": rec.candidate,
                    **({"target": name} if self.several else {}),
                    "accuracy": rec.accuracy,
                    "val_loss": rec.val_loss,
                    "train_s": rec.train_s,
                    "cost": rec.cost_figures,
                    "predicted": predicted.to_dict() if predicted is not None else None,
                    "measurement": m.to_dict(),
                    **round_fields(decided),
                }
            )
            self._score(rec, name, m, predicted, verdict)
            forecast = self.forecasts.get(name)
            if forecast is not None:
                forecast.observe(rec.view(name), Candidate.decode(rec.candidate))
        if self.several:
            several.settle(rec, self.names)
        elif failed:  # what was measured is logged: a resume measures only the rest
            rec.outcome, rec.reason = records.FAILED, "; ".join(failed)
        self._tell(study, trial, rec)

    def _score(
        self,
        rec: TrialRecord,
        name: str,
        m: Measurement,
        predicted: Prediction | None,
        verdict: Verdict | None,
    ) -> None:
        f = objectives.figures(m, self.settings, predicted, verdict)
        if self.several:
            f.outcome = records.MEASURED
            rec.boards[name] = f
        if name == self.names[0]:
            rec.latency_ms, rec.energy_mj, rec.feasible = f.latency_ms, f.energy_mj, f.feasible
            rec.latency_verdict = verdict
            rec.measurement, rec.predicted = m, predicted
            if not self.several and f.reason is not None:  # why it is infeasible
                rec.reason = f.reason

    def _tell(self, study: optuna.Study, trial: optuna.Trial, rec: TrialRecord) -> None:
        for key, value in rec.attrs().items():
            trial.set_user_attr(key, value)
        if rec.measurement is not None and not self.several:  # so any host can report
            trial.set_user_attr("measurement", shared.measurement_attr(rec.measurement))
        if rec.outcome == records.MEASURED:
            objectives.constrain(trial, rec, self.settings)
            energy = self.settings.energy_objective
            study.tell(trial, objectives.values(rec, self.names, energy=energy))
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
