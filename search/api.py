"""``SearchSpace`` and ``Searcher``, as users import them::

from search import SearchSpace, Searcher

space = SearchSpace(input_shape=(8, 8, 1), num_layers=(1, 3), layer_types=["conv", "pool", "fc"])
searcher = Searcher(space, budgets={"latency_ms": 0.5}, trials=20, epochs=5)
best_model = searcher.search(x, y)
loss, accuracy = best_model.evaluate(x_test, y_test)
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from hwnas_bench import BenchSettings, HwnasError, TargetSpec

from . import records
from .errors import DataError, InfeasibleBudgetError, SearchError, SettingsError
from .files import MAX_MODEL_BYTES, read_file, write_file
from .loop.report import final_line, write_overview, write_reports
from .loop.result import SearchedModel
from .loop.run import OnTrial, Search, SearchResult, data_fingerprint
from .loop.run_dir import RunDir
from .loop.run_lock import run_dir_lock
from .measure import ROUNDS, Board, bench_settings
from .model_card import CARD_FILE, TARGETS, safe_name, write_target_folder
from .records import TrialRecord
from .settings import (
    DEFAULT_OBJECTIVES,
    DEFAULT_STAT,
    Budgets,
    Objective,
    SearchSettings,
    check_objectives,
)
from .space import SearchSpace
from .strategies import Strategy, get_strategy
from .training.data import Split, class_count, labels, split, to_nchw
from .training.settings import TrainSettings

if TYPE_CHECKING:
    from .compress import CompressSettings


class Searcher:
    """Finds the most accurate candidate within the budgets, measured on ``target``.

    Settings come as objects or as keywords, never both for one setting (SettingsError):
    ``train`` (a :class:`~search.training.settings.TrainSettings`) or ``epochs``,
    ``batch_size``, ``optimizer``, ``lr``, ``train_threads``; a keyword left out (None) is
    the object's value, and the defaults are those of TrainSettings and SearchSettings
    (10 epochs, batch size 32, 40 trials: the same as ``hwnas search``). ``seed`` seeds the
    split, the strategy and the training (``train.seed`` when only ``train`` is given).

    ``budgets``: a :class:`~search.settings.Budgets`, or the same as a mapping
    (``{"latency_ms": 0.05, "energy_mj": 2.0, "memory_mb": ..., "flops": ..., "params":
    ...}``); ``constraints`` is its older name (one of the two). ``latency_stat``: the
    statistic the latency budget limits and the search minimises (default p50; a
    ``Budgets`` brings its own ``stat``).

    ``predictor``: skip training candidates that the measured per-layer table predicts over
    a budget by more than the predictor's own measured error (None: the strategy's default,
    on for ``evolution``; a skipped one is recorded as ``predicted_over_budget``).
    ``measure_rounds``: each candidate is measured as that many timed loops sharing
    ``bench.min_time_s``, and the median loop's Measurement is kept.
    ``storage`` (``postgresql://user@host/db``) and ``study`` (its name; ``study_name`` is
    the same): a study that searches on other hosts may share (docs/distributed.md);
    ``trials`` is then the study's total, and ``out`` holds this worker's measurements.
    ``targets``: search for several boards at once (instead of ``target``): each candidate
    is trained once and measured on every target; each target gets its own front, best
    model and ``targets/<name>/`` folder, and :attr:`models` holds each one's model.
    ``compress``: compress each target's model as the last step (True, or the
    ``CompressSettings``): int8 and pruned variants measured on that target, the fastest
    within the accuracy tolerance shipped in its folder (docs/compress.md).
    ``objectives``: ``("accuracy", "latency")`` (the default) or ``("accuracy", "latency",
    "energy")``: NSGA-II minimises the measured energy per inference too (needs a power
    meter on every target; the differentiable strategy takes an energy budget instead).
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        target: str | TargetSpec = "local",
        targets: Sequence[str | TargetSpec] | None = None,
        strategy: str | Strategy | None = None,
        train: TrainSettings | None = None,
        budgets: Budgets | Mapping[str, float] | None = None,
        bench: BenchSettings | dict[str, Any] | None = None,
        constraints: Mapping[str, float] | None = None,
        latency_stat: str | None = None,
        trials: int | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        optimizer: str | None = None,
        lr: float | None = None,
        validation_split: float | None = None,
        seed: int | None = None,
        out: str | Path | None = None,
        storage: str | None = None,
        study_name: str = "search",
        study: str | None = None,
        resume: bool = False,
        pruner: optuna.pruners.BasePruner | None = None,
        train_threads: int | None = None,
        progress: bool | None = None,
        lease_timeout: float = 600.0,
        predictor: bool | None = None,
        measure_rounds: int = ROUNDS,
        compress: bool | CompressSettings = False,
        objectives: Sequence[Objective] | None = None,
    ) -> None:
        self.space = space
        self.target = target
        if isinstance(targets, (str, TargetSpec)):
            raise SettingsError(f"targets is a list of targets: targets=[{targets!r}]")
        self.targets = check_targets([target] if targets is None else list(targets))
        loose = {
            "optimizer": optimizer,
            "lr": lr,
            "epochs": epochs,
            "batch_size": batch_size,
            "train_threads": train_threads,
        }
        training = given_train(train, loose, seed)
        self.strategy = get_strategy(
            SearchSettings.strategy if strategy is None else strategy, seed=training.seed
        )
        refuse_stage_space(space, self.strategy, predictor)
        several = len(self.targets) > 1
        if several and not self.strategy.several_targets:
            raise SettingsError(
                f"the {self.strategy.name} strategy searches one target at a time: run it "
                "once per target, or use evolution or random for several"
            )
        if several and storage is not None:
            raise SettingsError(
                "a shared study searches one target per worker: give each worker its "
                "own --target (docs/distributed.md)"
            )
        self.compress = compress_settings(compress)
        given: dict[str, Any] = {"trials": trials, "validation_split": validation_split}
        self.settings = SearchSettings(
            strategy=self.strategy.name,
            predictor=(
                (self.strategy.predictor_default and space.stage_space is None)
                if predictor is None
                else predictor
            ),
            strategy_options=self.strategy.options(),
            budgets=given_budgets(budgets, constraints, latency_stat),
            train=training,
            objectives=check_objectives(DEFAULT_OBJECTIVES if objectives is None else objectives),
            seed=training.seed,  # one seed: the split's, the strategy's and the training's
            **{name: value for name, value in given.items() if value is not None},
        )
        self.settings.validate()
        self.bench = bench if isinstance(bench, BenchSettings) else bench_settings(bench)
        #: a provider the caller named: the only candidate on every board (else chosen)
        self.provider = given_provider(bench)
        self.out = Path(out) if out is not None else None
        if storage is not None:
            from .loop.shared import check_storage_url

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
        #: called with each step of the compression (``compress=``)
        self.on_compress_log: Callable[[str], None] | None = None
        #: target name -> its best model (None: nothing measured within budget there)
        self.models: dict[str, SearchedModel | None] = {}

    def search(
        self,
        train_data: Any,
        train_labels: Any,
        *,
        test_data: Any = None,
        test_labels: Any = None,
    ) -> SearchedModel:
        """Search, and return the best model (several targets: the first target's that has
        one; all are in :attr:`models`). ``test_data``/``test_labels``: a held-out set whose
        accuracy goes on each model card. Raises InfeasibleBudgetError when no measured
        candidate meets the budget on any target (``self.result`` holds the run)."""
        y = labels(train_labels)
        space = self.space
        classes = class_count(y, space.num_classes)
        if space.num_classes is None:
            space = space.with_classes(classes)
        x = samples(train_data, space)
        data = split(x, y, self.settings.validation_split, self.settings.seed)
        test = None
        if test_data is not None and test_labels is not None:
            test = (samples(test_data, space), labels(test_labels))
        out = self.out or Path(tempfile.mkdtemp(prefix="hwnas-search-"))
        names = [target_name(t) for t in self.targets]
        with run_dir_lock(out):
            run_dir = RunDir(out, self.storage, self.study_name)
            boards = {
                name: Board(
                    t,
                    bench=self.bench,
                    lease_timeout=self.lease_timeout,
                    rounds=self.measure_rounds,
                    # an energy budget or objective: every window covers the board's
                    # meter (no meter: refused)
                    energy=self.settings.wants_energy,
                )
                for name, t in zip(names, self.targets, strict=True)
            }
            try:
                # what must match for a resume, and (without target, trials) for a shared study
                comparable = {
                    "settings": self.settings.resume_key(),
                    "space": space.to_dict(),
                    "data": data_fingerprint(data),
                    "bench": self.bench.to_wire(),
                    "measure_rounds": self.measure_rounds,
                }
                tables = {name: board.bench_tables() for name, board in boards.items()}
                if any(tables.values()):  # the boards' own settings (none: as runs before them)
                    comparable["board_bench"] = tables[names[0]] if len(names) == 1 else tables
                run_dir.check(
                    {
                        **comparable,
                        "trials": self.settings.trials,
                        "target": names[0] if len(names) == 1 else names,
                    },
                    resume=self.resume,
                )
                for board in boards.values():
                    board.on_progress = self.on_measure_progress
                with self._progress() as on_trial:
                    search = Search(
                        space,
                        data,
                        self.settings,
                        boards=boards,
                        provider=self.provider,
                        strategy=self.strategy,
                        run_dir=run_dir,
                        pruner=self.pruner,
                        on_trial=on_trial,
                        study_record=comparable,
                    )
                    self.result = search.result
                    result = search.run_search()
                self.models = self._deliver(result, run_dir, boards, data, test)
            finally:
                for board in boards.values():
                    board.close()
        found = [m for m in self.models.values() if m is not None]
        if not found:
            raise InfeasibleBudgetError(
                "\n".join(
                    (f"{name}: " if len(names) > 1 else "") + self._why_none(result, name)
                    for name in names
                ),
                smallest_ms=result.for_target(names[0]).smallest_latency(),
                stat=self.settings.latency_stat,
            )
        return found[0]

    @staticmethod
    def _why_none(result: SearchResult, name: str) -> str:
        view = result.for_target(name)
        return final_line(view) + (
            "" if view.best is None else " (none of them measured by this worker)"
        )

    def _deliver(
        self,
        result: SearchResult,
        run_dir: RunDir,
        boards: dict[str, Board],
        data: Split,
        test: tuple[np.ndarray, np.ndarray] | None,
    ) -> dict[str, SearchedModel | None]:
        """The reports, and each target's folder: its best model and card (compressed if
        asked, on the board still leased for it)."""
        several = result.several
        if several:
            write_overview(result)
        models: dict[str, SearchedModel | None] = {}
        for name in boards:
            view = result.for_target(name)
            write_reports(view, run_dir.target_dir(name) if several else None)
            best = view.best
            if best is not None and not run_dir.model_path(best.hash).exists():
                # a shared study's best measured by another worker: its model is in that
                # worker's run directory; this one answers with the best it has here
                best = records.best(r for r in view.trials if run_dir.model_path(r.hash).exists())
                if best is not None and not several:
                    model_bytes = read_file(run_dir.model_path(best.hash), MAX_MODEL_BYTES)
                    write_file(run_dir.out / "best.onnx", model_bytes)
            if best is None or best.measurement is None:
                models[name] = None
                continue
            state = result.targets[name]
            # the best retrained on train+validation and measured again ships (loop/final.py)
            final = state.final if state.final and state.final.candidate_hash == best.hash else None
            model = SearchedModel(run_dir.model_path(best.hash).read_bytes(), best, final=final)
            if final is not None and not several:
                write_file(run_dir.out / "best.onnx", final.onnx)
            models[name] = model
            test_accuracy = model.evaluate(*test)[1] if test is not None else None
            card_path = run_dir.out / TARGETS / safe_name(name) / CARD_FILE
            if result.finished_before and card_path.exists():
                continue  # a finished run resumed: its card keeps its date (and compression)
            folder = write_target_folder(
                run_dir.out,
                name,
                model=model.onnx,
                record=best,
                settings=self.settings,
                board_name=state.board,
                facts=state.facts,
                test_accuracy=test_accuracy,
                provider=state.provider.to_dict() if state.provider else None,
                final=final,
            )
            # a compression of an earlier run of this directory is not this model's
            shutil.rmtree(folder / "compression", ignore_errors=True)
        self.models = models  # kept when a compression below fails
        if self.compress is not None:
            self._compress_each(result, run_dir, boards, models, data, test)
        return models

    def _compress_each(
        self,
        result: SearchResult,
        run_dir: RunDir,
        boards: dict[str, Board],
        models: dict[str, SearchedModel | None],
        data: Split,
        test: tuple[np.ndarray, np.ndarray] | None,
    ) -> None:
        """Each target's model compressed on its board; one that fails leaves that target's
        fp32 folder as it was, the others are still compressed, and the failures are
        raised together at the end (the search's results are all written by then)."""
        from .compress.step import compress_target

        assert self.compress is not None
        failed: list[str] = []
        mistakes = True  # every failure a settings mistake (exit 2), not a board's
        for name, model in models.items():
            if model is None:
                continue
            state = result.targets[name]
            try:
                compress_target(
                    run_dir.out,
                    name,
                    model,
                    data,
                    boards[name],
                    settings=self.settings,
                    board_name=state.board,
                    facts=state.facts,
                    compress=self.compress,
                    test=test,
                    log=self.on_compress_log,
                )
            except (SearchError, HwnasError) as exc:
                failed.append(f"{name}: {str(exc).splitlines()[0]}")
                mistakes = mistakes and isinstance(exc, (SettingsError, DataError))
        if failed:
            error = SettingsError if mistakes else SearchError
            raise error(
                "compression failed (the searched fp32 model stays in its target folder) "
                "for " + "; ".join(failed)
            )

    @contextlib.contextmanager
    def _progress(self) -> Iterator[OnTrial | None]:
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        if not show:
            yield self.on_trial
            return
        from .loop.progress import progress_bar

        with progress_bar(self.settings.trials, self.settings.latency_stat) as bar:
            if self.on_trial is None:
                yield bar
                return
            extra = self.on_trial

            def both(rec: TrialRecord, result: SearchResult) -> None:
                bar(rec, result)
                extra(rec, result)

            yield both


def samples(x: Any, space: SearchSpace) -> np.ndarray:
    """The samples channels first, as the space's candidates take them."""
    if space.stage_space is None:
        return to_nchw(x, space.hwc)
    from .blocks.data import to_channels_first

    return to_channels_first(x, space.input_shape)


def refuse_stage_space(space: SearchSpace, strategy: Strategy, predictor: bool | None) -> None:
    """What cannot serve the stage space's block candidates yet says so (SettingsError),
    rather than search without it."""
    if space.stage_space is None:
        return


def given_budgets(
    budgets: Budgets | Mapping[str, float] | None,
    constraints: Mapping[str, float] | None,
    latency_stat: str | None,
) -> Budgets:
    """``Searcher``'s budgets: ``budgets`` (a Budgets or a mapping) or ``constraints`` (the
    older name of the mapping), on ``latency_stat``."""
    if budgets is not None and constraints is not None:
        raise SettingsError("give budgets= or constraints= (its older name), not both")
    if isinstance(budgets, Budgets):
        if latency_stat is not None and latency_stat != budgets.stat:
            raise SettingsError(
                f"latency_stat={latency_stat!r} but the budgets are on {budgets.stat!r}: "
                "give one (Budgets(stat=...))"
            )
        return budgets
    given = budgets if budgets is not None else constraints
    if given is not None and not isinstance(given, Mapping):
        raise SettingsError(f"budgets is a Budgets or a mapping, not {given!r}")
    return Budgets.from_mapping(given, stat=latency_stat or DEFAULT_STAT)


#: ``Searcher``'s training keywords -> the TrainSettings field each one sets
TRAIN_KEYWORDS = {
    "optimizer": "optimizer",
    "lr": "lr",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "train_threads": "threads",
}


def given_train(
    train: TrainSettings | None, loose: Mapping[str, Any], seed: int | None
) -> TrainSettings:
    """``Searcher``'s training settings: ``train``, or the keywords given (``loose``, by
    their names in TRAIN_KEYWORDS; None: not given) over TrainSettings' defaults, seeded with
    ``seed``. A keyword given with ``train`` is refused, naming both: each setting has one
    place."""
    given: dict[str, Any] = {
        TRAIN_KEYWORDS[key]: value for key, value in loose.items() if value is not None
    }
    if train is None:
        if seed is not None:
            given["seed"] = seed
        return TrainSettings(**given)
    if not isinstance(train, TrainSettings):
        raise SettingsError(f"train is a TrainSettings, not {train!r}")
    for key, value in loose.items():
        if value is not None:
            field = TRAIN_KEYWORDS[key]
            raise SettingsError(
                f"{key}={value!r} and train= both set the training's {field}: give it in one "
                f"place (train=TrainSettings({field}=...) or {key}=)"
            )
    if seed is not None and seed != train.seed:
        raise SettingsError(
            f"seed={seed!r} but train.seed={train.seed!r}: the search and its training share "
            "one seed; give one of them"
        )
    return train


def given_provider(bench: BenchSettings | Mapping[str, Any] | None) -> str | None:
    if isinstance(bench, BenchSettings):  # a whole settings object: its provider, unless
        default = BenchSettings().provider  # it is the default one
        return bench.provider if bench.provider != default else None
    value = (bench or {}).get("provider")
    return str(value) if value else None


def target_name(target: str | TargetSpec) -> str:
    return target.name if isinstance(target, TargetSpec) else target


def check_targets(targets: list[str | TargetSpec]) -> list[str | TargetSpec]:
    """At least one, each named once, each with a folder name of its own."""
    if not targets:
        raise SettingsError("targets is empty: give at least one target")
    for t in targets:
        if not isinstance(t, (str, TargetSpec)):
            raise SettingsError(f"a target is a board name or a TargetSpec, not {t!r}")
        if not target_name(t).strip():
            raise SettingsError("a target name is empty")
    names = [target_name(t) for t in targets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SettingsError(f"target {repeated[0]} is given twice")
    folders: dict[str, str] = {}
    for name in names:
        other = folders.setdefault(safe_name(name), name)
        if other != name:
            raise SettingsError(
                f"targets {other} and {name} would share the folder targets/{safe_name(name)}"
            )
    return targets


def compress_settings(compress: bool | CompressSettings) -> CompressSettings | None:
    if compress is False or compress is None:
        return None
    from .compress import CompressSettings

    if compress is True:
        return CompressSettings()
    if not isinstance(compress, CompressSettings):
        raise SettingsError(f"compress is True, False or CompressSettings, not {compress!r}")
    compress.validate()
    return compress


__all__ = ["SearchSpace", "SearchedModel", "Searcher"]
