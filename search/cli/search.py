"""``hwnas search``: added to the ``hwnas`` command through the ``hwnas_add_commands`` hook.

This module is loaded by every ``hwnas`` start (it is a plugin), so it imports nothing
heavy: torch and Optuna load only when a search runs. The option table is in
:mod:`.search_flags`, search.toml in :mod:`.search_toml`, how the settings are merged in
:mod:`.search_options`, what a resume takes from the run in :mod:`.resume`; this module runs
the search and prints its result.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from hw_targets import hookimpl

from ..errors import DataError, SearchError
from ..training.settings import TrainSettings
from .common import bench_overrides, say
from .errors import FAILED, hidden, run_verb
from .report import add_report_parser
from .resume import write_command
from .search_flags import DEFAULT_SPACE, DEFAULTS, add_search_parser
from .search_options import options
from .search_toml import compress_option

__all__ = ["DEFAULTS", "DEFAULT_SPACE", "compress_option", "hwnas_add_commands", "run"]


@hookimpl
def hwnas_add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    add_search_parser(subparsers).set_defaults(func=run)
    add_report_parser(subparsers)


def _resume_hint(args: argparse.Namespace) -> str:
    """After Ctrl-C (no finished trial is lost): the command that goes on."""
    again = f"hwnas search --resume --out {shlex.quote(str(args.out))}"
    if getattr(args, "storage", None):
        again += f" --storage {shlex.quote(hidden(args, args.storage))}"
    return f"continue the search with: {again}"


def _check_test_split(data: Any, space: Any) -> None:
    from ..api import samples
    from ..training.data import class_count

    if data.x_test is None or data.y_test is None:
        return
    if len(data.x_test) != len(data.y_test):
        raise DataError(f"x_test holds {len(data.x_test)} samples but y_test {len(data.y_test)}")
    samples(data.x_test, space)  # the shape of x, and finite
    classes = class_count(data.y, space.num_classes)
    if data.y_test.size and int(data.y_test.max()) >= classes:
        raise DataError(f"y_test has label {int(data.y_test.max())}; y has {classes} classes")


@run_verb(interrupted=_resume_hint)
def run(args: argparse.Namespace) -> int:
    """The verb: 0 a model for every target, 1 a target left without one (or no candidate
    within the budget), 2 a mistake in the command or the files."""
    opts, space_opts, keywords = options(args)
    try:
        from ..api import Searcher
    except ImportError as exc:  # torch / optuna missing
        raise SearchError(
            f"the search needs its extra: pip install 'hwnas-bench[search]' ({exc})"
        ) from exc
    from ..loop.report import final_line, trial_line
    from ..space import SearchSpace
    from ..training.data import load_dataset, load_npz

    data = (
        load_npz(opts["data"], allow_channels_first=bool(opts["channels_first_ok"]))
        if opts["data"]
        else load_dataset(opts["dataset"])
    )
    space = SearchSpace.from_dict({"input_shape": data.input_shape, **space_opts})
    from ..settings import Budgets
    from ..strategies import get_strategy

    # a resumed run's budgets (its flops, params) as the options now set them
    budgets = (keywords.pop("budgets", None) or Budgets()).with_options(opts)

    strategy_options = {"fixed_lambda": opts["lambda"]} if opts["lambda"] is not None else None
    searcher = Searcher(
        space,
        targets=opts["target"],
        compress=compress_option(opts["compress"], args.config),
        strategy=get_strategy(opts["strategy"], seed=opts["seed"], options=strategy_options),
        predictor=None if opts["predictor"] is None else opts["predictor"] == "on",
        budgets=budgets,
        trials=opts["trials"],
        train=train_settings(opts, keywords),
        seed=opts["seed"],
        out=opts["out"],
        storage=getattr(args, "storage", None),
        study=getattr(args, "study", None),
        resume=args.resume,
        bench=bench_overrides(opts["min_time"], opts["threads"]),
        progress=False if args.quiet else None,
        **keywords,
    )
    if not args.quiet and not sys.stderr.isatty():  # a log, not a terminal: a line a trial
        stat = opts["latency_stat"]
        searcher.on_trial = lambda rec, _: print(trial_line(rec, stat), flush=True)
    _check_test_split(data, space)  # before the search, not after it has run
    if searcher.storage is not None:
        from ..loop.shared import shown

        say(f"study {searcher.study_name} in {shown(searcher.storage)}")
    if args.resume and not (Path(opts["out"]) / "search.json").exists():
        say(f"hwnas: nothing to resume in {opts['out']}; starting a new search")
    write_command(args, opts)
    if opts["compress"]:
        searcher.on_compress_log = lambda line: say(f"compress: {line}")
    best = searcher.search(data.x, data.y, test_data=data.x_test, test_labels=data.y_test)
    result = searcher.result
    assert result is not None
    if not result.several:
        if data.x_test is not None and data.y_test is not None:
            loss, acc = best.evaluate(data.x_test, data.y_test)
            print(f"Test accuracy of the best model: {100 * acc:.1f}% (loss {loss:.3f})")
        print(f"Run directory: {result.out} (best.onnx, pareto.png, summary.md)")
        _print_shipped(result.out, opts["target"][0])
        print(final_line(result))  # the last line, for scripts
        return 0
    print(f"Run directory: {result.out} (summary.md, pareto.png; targets/<name>/ for each)")
    for name in opts["target"]:
        _print_shipped(result.out, name)
    missing = [name for name in opts["target"] if searcher.models.get(name) is None]
    if missing:
        print(f"No model for {', '.join(missing)}: no candidate measured within budget there")
    for name in opts["target"]:
        print(f"{name}: {final_line(result.for_target(name))}")
    return FAILED if missing else 0


def train_settings(opts: dict[str, Any], keywords: dict[str, Any]) -> TrainSettings:
    """The TrainSettings the options give (a resumed run's threads from ``keywords``)."""
    threads = keywords.pop("train_threads", None)
    return TrainSettings(
        optimizer=opts["optimizer"],
        lr=opts["lr"],
        epochs=opts["epochs"],
        batch_size=opts["batch_size"],
        seed=opts["seed"],
        threads=TrainSettings.threads if threads is None else threads,
        schedule=opts["schedule"],
        weight_decay=opts["weight_decay"],
        label_smoothing=opts["label_smoothing"],
        augment=opts["augment"],
        flips=bool(opts["flip_ok"]),
        final_epochs=opts["final_epochs"],
    )


def _print_shipped(out: Path, target: str) -> None:
    """Where the target's model and card are, with what its card says it is."""
    from ..model_card import ModelCardError, read_target_folder

    try:
        path, card = read_target_folder(out, target)
    except ModelCardError:  # a summary line, never a failure of the search
        return
    compression = card.compression.get("variant") if card.compression else "fp32"
    test = card.accuracy.get("test")
    print(
        f"Model for {target}: {path} ({compression}, {card.latency_stat} {card.latency_ms:.3f} ms "
        f"measured on {card.board}"
        + (f", test accuracy {100 * test:.1f}%" if test is not None else "")
        + (f", retrained {card.final['epochs']} epochs on train+validation" if card.final else "")
        + ")"
    )
