"""``hwnas search``: added to the ``hwnas`` command through the ``hwnas_add_commands`` hook.

This module is loaded by every ``hwnas`` start (it is a plugin), so it imports nothing
heavy: torch and Optuna load only when a search runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from hw_targets import hookimpl

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

#: The space the CLI searches unless search.toml's [space] says otherwise.
DEFAULT_SPACE: dict[str, Any] = {
    "num_layers": [1, 4],
    "layer_types": ["conv", "dwconv", "pool", "fc", "skip"],
    "conv_kernels": [3, 5],
    "conv_strides": [1, 2],
    "conv_channels": [4, 8, 16, 32],
    "pool_sizes": [2],
    "pool_strides": [2],
    "fc_sizes": [16, 32, 64],
}

#: option -> default, for options that search.toml may also set
DEFAULTS: dict[str, Any] = {
    "target": "local",
    "dataset": None,
    "data": None,
    "latency_budget_ms": None,
    "energy_budget_mj": None,
    "memory_budget_mb": None,
    "latency_stat": "p50",
    "strategy": "evolution",
    "trials": 40,
    "epochs": 10,
    "batch_size": 32,
    "optimizer": "adam",
    "lr": None,
    "seed": 0,
    "out": None,
    "min_time": 0.25,
    "threads": 1,
    "predictor": None,  #: "on" / "off"; None: the strategy's default (on for evolution)
    "lambda": None,  #: differentiable: a fixed latency weight instead of the calibrated one
    "compress": False,  #: compress each target's model as the last step
}
#: rounds of a differentiable search (derive, train, measure, correct) unless --trials says
DIFFERENTIABLE_TRIALS = 5


#: what search.toml may hold for each option (TOML has no paths: they are strings)
_TOML_TYPES: dict[str, tuple[type, ...]] = {
    "target": (str, list),  #: a name, or a list of names (several targets)
    "compress": (bool, dict),  #: true, or a [compress] table of CompressSettings fields
    **dict.fromkeys(("dataset", "data", "latency_stat", "strategy"), (str,)),
    **dict.fromkeys(("optimizer", "out", "predictor"), (str,)),
    **dict.fromkeys(("trials", "epochs", "batch_size", "seed", "threads"), (int,)),
    **dict.fromkeys(
        ("latency_budget_ms", "energy_budget_mj", "memory_budget_mb", "lr", "min_time", "lambda"),
        (int, float),
    ),
}


def _check_toml(config: Path, file: dict[str, Any]) -> None:
    """A value of the wrong type is named at once, never coerced (``trials = true``)."""
    from .errors import SettingsError

    for key, value in file.items():
        kinds = _TOML_TYPES.get(key, ())
        if key == "compress":
            if not isinstance(value, (bool, dict)):
                raise SettingsError(
                    f"{config}: compress must be true, false or a [compress] table, not {value!r}"
                )
            continue
        if key == "target" and isinstance(value, list):
            if not value or not all(isinstance(v, str) and v for v in value):
                raise SettingsError(f"{config}: target must be a name or a list of names")
            continue
        if isinstance(value, bool) or not isinstance(value, kinds):
            wanted = "a number" if float in kinds else "an integer" if int in kinds else "a string"
            raise SettingsError(f"{config}: {key} must be {wanted}, not {value!r}")


@hookimpl
def hwnas_add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "search",
        help="search the architecture with the best accuracy within a latency budget "
        "measured on the board",
        description="Train candidates here, measure each on the board, keep the most "
        "accurate within the budget. Options may also come from --config search.toml "
        "(the same names with underscores, and a [space] table); flags win.",
    )
    p.add_argument("--config", type=Path, help="search.toml with settings and a [space] table")
    p.add_argument(
        "--target",
        action="append",
        metavar="NAME",
        help="board name, tag:X, or local (default); repeat it to search for several boards "
        "at once (each candidate trained once, measured on every one)",
    )
    data = p.add_mutually_exclusive_group()
    data.add_argument("--dataset", choices=["digits"], help="an offline demo dataset")
    data.add_argument("--data", type=Path, help=".npz holding x, y (and x_test, y_test)")
    p.add_argument("--latency-budget-ms", type=float, metavar="X")
    p.add_argument("--energy-budget-mj", type=float, metavar="Y", help="needs a power meter")
    p.add_argument("--memory-budget-mb", type=float, metavar="M", help="weights + activations")
    p.add_argument("--latency-stat", choices=["p50", "p95", "p99", "mean"])
    p.add_argument("--strategy", choices=["random", "evolution", "differentiable"])
    p.add_argument(
        "--predictor",
        choices=["on", "off"],
        help="skip training candidates the measured-table predictor puts far over budget "
        "(default: on for evolution and differentiable, off for random)",
    )
    p.add_argument(
        "--lambda",
        type=float,
        metavar="X",
        help="differentiable: fixed weight of E[latency] in the loss (default: calibrated to "
        "the budget within the search)",
    )
    p.add_argument("--trials", type=int, metavar="N")
    p.add_argument("--epochs", type=int, metavar="N", help="training epochs per candidate")
    p.add_argument("--batch-size", type=int, metavar="N")
    p.add_argument("--optimizer", choices=["adam", "sgd", "adamw"])
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int, metavar="N")
    p.add_argument("--min-time", type=float, metavar="S", help="timed loop per measurement")
    p.add_argument("--threads", type=int, metavar="N", help="onnxruntime threads on the board")
    p.add_argument(
        "--compress",
        action="store_true",
        help="last step: int8 and pruned variants of each target's model, measured there; "
        "the fastest within 1 point of accuracy ships (a [compress] table in search.toml "
        "sets tolerance, prune_ratios, ...; docs/compress.md)",
    )
    p.add_argument("--out", type=Path, help="run directory, e.g. runs/NAME")
    p.add_argument("--resume", action="store_true", help="continue the search in --out")
    p.add_argument(
        "--storage",
        metavar="URL",
        help="share the study with workers on other hosts: postgresql://user@host/db "
        "(docs/distributed.md); --trials is then the study's total",
    )
    p.add_argument("--study", metavar="NAME", help="the study's name in --storage")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    r = subparsers.add_parser(
        "report",
        help="the Pareto plot and summary of a shared study, from the study alone",
        description="Write pareto.png, pareto.json and summary.md for the study NAME in "
        "--storage, from its trials (every worker's measurements are trial attributes).",
    )
    r.add_argument("--storage", required=True, metavar="URL", help="postgresql://user@host/db")
    r.add_argument("--study", required=True, metavar="NAME")
    r.add_argument("--out", required=True, type=Path, metavar="DIR")
    r.set_defaults(func=report)


def _options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, space) from search.toml then the flags."""
    from .errors import SettingsError

    file: dict[str, Any] = {}
    if args.config is not None:
        try:
            file = tomllib.loads(args.config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"cannot read {args.config}: {exc}") from exc
    space_file = file.pop("space", {})
    if not isinstance(space_file, dict):
        raise SettingsError(f"{args.config}: space must be a table ([space]), not {space_file!r}")
    space = {**DEFAULT_SPACE, **space_file}
    unknown = sorted(set(file) - set(DEFAULTS))
    if unknown:
        raise SettingsError(f"{args.config}: unknown settings {', '.join(unknown)}")
    if args.config is not None:
        _check_toml(args.config, file)
    opts = {**DEFAULTS, **file}
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None and value is not False:  # store_true flags: False is unset
            if key == "compress" and isinstance(opts[key], dict):
                continue  # --compress with a [compress] table: the table's settings
            opts[key] = value
    targets = opts["target"]
    opts["target"] = [targets] if isinstance(targets, str) else list(targets)
    if opts["dataset"] is None and opts["data"] is None:
        raise SettingsError("give --dataset digits or --data train.npz")
    if opts["out"] is None:
        raise SettingsError("give --out runs/NAME (the run directory)")
    if getattr(args, "study", None) is not None and getattr(args, "storage", None) is None:
        raise SettingsError("--study names a study in --storage: give --storage URL too")
    if getattr(args, "storage", None) is not None:
        from .shared import check_storage_url

        args.storage = check_storage_url(args.storage, "--storage")
    if opts["predictor"] not in (None, "on", "off"):
        raise SettingsError(f"predictor must be on or off, not {opts['predictor']!r}")
    if opts["lambda"] is not None and opts["strategy"] != "differentiable":
        raise SettingsError(
            "--lambda weighs the differentiable search's loss: add --strategy differentiable"
        )
    if opts["strategy"] == "differentiable" and "trials" not in file and args.trials is None:
        opts["trials"] = DIFFERENTIABLE_TRIALS
    if Path(opts["out"]).exists() and not Path(opts["out"]).is_dir():
        raise SettingsError(f"--out {opts['out']} is a file; give a directory for the run")
    return opts, space


def compress_option(value: bool | dict[str, Any], config: Path | None) -> Any:
    """``--compress`` / ``compress = true`` (the defaults), or a ``[compress]`` table of
    ``CompressSettings`` fields (``tolerance = 0.5``, ``prune_ratios = [0.5]``, ...)."""
    if not isinstance(value, dict):
        return bool(value)
    import dataclasses

    from .compress import CompressSettings
    from .errors import SettingsError

    names = {f.name for f in dataclasses.fields(CompressSettings)} - {"bench"}
    unknown = sorted(set(value) - names)
    if unknown:
        raise SettingsError(
            f"{config}: unknown [compress] settings {', '.join(unknown)} "
            f"(known: {', '.join(sorted(names))})"
        )
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    try:
        settings = CompressSettings(**fields)
        settings.validate()
    except (TypeError, ValueError) as exc:  # a value of the wrong type
        raise SettingsError(f"{config}: [compress]: {exc}") from exc
    return settings


def _check_test_split(data: Any, space: Any) -> None:
    from .data import class_count, to_nchw
    from .errors import DataError

    if data.x_test is None or data.y_test is None:
        return
    if len(data.x_test) != len(data.y_test):
        raise DataError(f"x_test holds {len(data.x_test)} samples but y_test {len(data.y_test)}")
    to_nchw(data.x_test, space.hwc)  # the shape of x, and finite
    classes = class_count(data.y, space.num_classes)
    if data.y_test.size and int(data.y_test.max()) >= classes:
        raise DataError(f"y_test has label {int(data.y_test.max())}; y has {classes} classes")


def run(args: argparse.Namespace) -> int:
    from .errors import DataError, InfeasibleBudgetError, SearchError, SettingsError, SpaceError

    try:
        return _run(args)
    except InfeasibleBudgetError as exc:
        print(str(exc))
        return 1
    except (SettingsError, SpaceError, DataError) as exc:
        print(f"hwnas: error: {_hidden(args, str(exc).splitlines()[0])}", file=sys.stderr)
        return 2
    except SearchError as exc:
        print(f"hwnas: error: {_hidden(args, str(exc).splitlines()[0])}", file=sys.stderr)
        return 1


def _hidden(args: argparse.Namespace, text: str) -> str:
    """``text`` without the storage URL's password (a driver error may quote it)."""
    from hwnas_bench.lock_url import redact, url_password

    url = getattr(args, "storage", None)
    return redact(text, url_password(url) if url else None)


def report(args: argparse.Namespace) -> int:
    """``hwnas report --storage URL --study NAME --out DIR``."""
    from .errors import SearchError, SettingsError

    try:
        from .report import report_study
        from .shared import check_storage_url, shown

        url = check_storage_url(args.storage)
        result = report_study(url, args.study, args.out)
    except SettingsError as exc:
        print(f"hwnas: error: {_hidden(args, str(exc).splitlines()[0])}", file=sys.stderr)
        return 2
    except SearchError as exc:
        print(f"hwnas: error: {_hidden(args, str(exc).splitlines()[0])}", file=sys.stderr)
        return 1
    from .report import final_line

    print(f"Study {args.study} in {shown(url)}: {args.out} (pareto.png, pareto.json, summary.md)")
    print(final_line(result))
    return 0


def _run(args: argparse.Namespace) -> int:
    opts, space_opts = _options(args)
    try:
        from .api import Searcher
    except ImportError as exc:  # torch / optuna missing
        from .errors import SearchError

        raise SearchError(
            f"the search needs its extra: pip install 'hwnas-bench[search]' ({exc})"
        ) from exc
    from .data import load_dataset, load_npz
    from .report import final_line, trial_line
    from .space import SearchSpace

    data = load_npz(opts["data"]) if opts["data"] else load_dataset(opts["dataset"])
    space = SearchSpace.from_dict({"input_shape": data.input_shape, **space_opts})
    constraints = {
        "latency_ms": opts["latency_budget_ms"],
        "energy_mj": opts["energy_budget_mj"],
        "memory_mb": opts["memory_budget_mb"],
    }
    from .strategies import get_strategy

    options = {"fixed_lambda": opts["lambda"]} if opts["lambda"] is not None else None
    searcher = Searcher(
        space,
        targets=opts["target"],
        compress=compress_option(opts["compress"], args.config),
        strategy=get_strategy(opts["strategy"], seed=opts["seed"], options=options),
        predictor=None if opts["predictor"] is None else opts["predictor"] == "on",
        constraints={k: v for k, v in constraints.items() if v is not None},
        latency_stat=opts["latency_stat"],
        trials=opts["trials"],
        epochs=opts["epochs"],
        batch_size=opts["batch_size"],
        optimizer=opts["optimizer"],
        lr=opts["lr"],
        seed=opts["seed"],
        out=opts["out"],
        storage=getattr(args, "storage", None),
        study=getattr(args, "study", None),
        resume=args.resume,
        bench={"min_time_s": opts["min_time"], "threads": opts["threads"]},
        progress=False if args.quiet else None,
    )
    if not args.quiet and not sys.stderr.isatty():  # a log, not a terminal: a line a trial
        stat = opts["latency_stat"]
        searcher.on_trial = lambda rec, _: print(trial_line(rec, stat), flush=True)
    _check_test_split(data, space)  # before the search, not after it has run
    if searcher.storage is not None:
        from .shared import shown

        print(f"study {searcher.study_name} in {shown(searcher.storage)}", file=sys.stderr)
    if args.resume and not (Path(opts["out"]) / "search.json").exists():
        print(f"hwnas: nothing to resume in {opts['out']}; starting a new search", file=sys.stderr)
    if opts["compress"]:
        searcher.on_compress_log = lambda line: print(f"compress: {line}", file=sys.stderr)
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
    return 1 if missing else 0


def _print_shipped(out: Path, target: str) -> None:
    """Where the target's model and card are, with what its card says it is."""
    from .model_card import ModelCardError, read_target_folder

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
        + ")"
    )
