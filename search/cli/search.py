"""``hwnas search``: added to the ``hwnas`` command through the ``hwnas_add_commands`` hook.

This module is loaded by every ``hwnas`` start (it is a plugin), so it imports nothing
heavy: torch and Optuna load only when a search runs.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shlex
import stat
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
    "channels_first_ok": False,  #: take an x that looks channels-first as it is
}
#: rounds of a differentiable search (derive, train, measure, correct) unless --trials says
DIFFERENTIABLE_TRIALS = 5


#: what search.toml may hold for each option (TOML has no paths: they are strings)
_TOML_TYPES: dict[str, tuple[type, ...]] = {
    "target": (str, list),  #: a name, or a list of names (several targets)
    "compress": (bool, dict),  #: true, or a [compress] table of CompressSettings fields
    "channels_first_ok": (bool,),
    **dict.fromkeys(("dataset", "data", "latency_stat", "strategy"), (str,)),
    **dict.fromkeys(("optimizer", "predictor"), (str,)),
    **dict.fromkeys(("trials", "epochs", "batch_size", "seed", "threads"), (int,)),
    **dict.fromkeys(
        ("latency_budget_ms", "energy_budget_mj", "memory_budget_mb", "lr", "min_time", "lambda"),
        (int, float),
    ),
}
#: the most of a --config file that is read: a search.toml is a few hundred bytes
CONFIG_CAP = 1 << 20
#: what the CLI adds to the run directory: the inputs search.json does not hold, so that
#: ``--resume --out DIR`` needs no other flag
COMMAND_FILE = "command.json"


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _unknown(what: str, unknown: list[str], known: list[str]) -> str:
    """``unknown settings budgte (did you mean latency_budget_ms?)``."""
    pairs = [
        (name, close[0])
        for name in unknown
        for close in [difflib.get_close_matches(name, known, n=1, cutoff=0.6)]
        if close
    ]
    if len(pairs) == 1 and len(unknown) == 1:
        hint = f" (did you mean {pairs[0][1]}?)"
    elif pairs:
        hint = f" (did you mean {', '.join(f'{b} for {a}' for a, b in pairs)}?)"
    else:
        hint = f" (known: {', '.join(known)})"
    return f"unknown {what} {', '.join(unknown)}{hint}"


def read_regular_file(path: Path, flag: str, cap: int | None) -> bytes | None:
    """The bytes of ``path`` (None: only checked), refused with one line naming ``flag`` when
    it is missing, not a regular file (``/dev/zero``, a FIFO, a directory) or over ``cap``."""
    from ..errors import SettingsError

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    except FileNotFoundError:
        raise SettingsError(f"{flag} {path}: no such file") from None
    except OSError as exc:
        raise SettingsError(f"{flag} {path}: cannot open it ({exc.strerror or exc})") from exc
    mode = os.fstat(fd).st_mode
    problem = None
    if stat.S_ISDIR(mode):
        problem = "is a directory, not a file"
    elif not stat.S_ISREG(mode):
        problem = "not a regular file"
    if problem or cap is None:
        os.close(fd)
        if problem:
            raise SettingsError(f"{flag} {path}: {problem}")
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise SettingsError(f"{flag} {path}: larger than {cap // 1024} KiB, not a search.toml")
    return data


def _read_config(config: Path) -> dict[str, Any]:
    from ..errors import SettingsError

    raw = read_regular_file(config, "--config", CONFIG_CAP)
    assert raw is not None
    try:
        parsed: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SettingsError(f"--config {config}: not UTF-8 text, not a search.toml") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{config}: not valid TOML: {exc}") from exc
    return parsed


def _flat(value: Any) -> bool:
    """A TOML scalar, or an array of scalars (no nested arrays, no tables)."""
    scalars = (str, int, float, bool)
    if isinstance(value, list):
        return all(isinstance(v, scalars) for v in value)
    return isinstance(value, scalars)


def _check_table(config: Path, name: str, table: dict[str, Any], known: list[str]) -> None:
    """A ``[space]`` or ``[compress]`` table: known keys, each a value or a flat array."""
    from ..errors import SettingsError

    unknown = sorted(set(table) - set(known))
    if unknown:
        raise SettingsError(f"{config}: {_unknown(f'[{name}] settings', unknown, known)}")
    for key, value in table.items():
        if not _flat(value):
            raise SettingsError(
                f"{config}: [{name}] {key} must be a value or an array of values "
                f"(no nested arrays or tables), not {value!r}"
            )


def _check_toml(config: Path, file: dict[str, Any]) -> None:
    """Known keys; a value of the wrong type is named at once, never coerced (``trials =
    true``); no nested arrays or tables where a value belongs."""
    from ..errors import SettingsError

    if "out" in file:
        raise SettingsError(
            f"{config}: out is not a search.toml setting: the run directory is --out DIR"
        )
    unknown = sorted(set(file) - set(_TOML_TYPES) - {"space"})
    if unknown:
        raise SettingsError(f"{config}: {_unknown('settings', unknown, sorted(_TOML_TYPES))}")
    for key, value in file.items():
        kinds = _TOML_TYPES.get(key, ())
        if key == "space":
            if not isinstance(value, dict):
                raise SettingsError(f"{config}: space must be a table ([space]), not {value!r}")
            _check_table(config, "space", value, _space_keys())
            continue
        if key == "compress":
            if not isinstance(value, (bool, dict)):
                raise SettingsError(
                    f"{config}: compress must be true, false or a [compress] table, not {value!r}"
                )
            if isinstance(value, dict):
                _check_table(config, "compress", value, sorted(value))  # names: compress_option
            continue
        if key == "target" and isinstance(value, list):
            if not value or not all(isinstance(v, str) and v for v in value):
                raise SettingsError(f"{config}: target must be a name or a list of names")
            continue
        if isinstance(value, bool) or not isinstance(value, kinds):
            wanted = "a number" if float in kinds else "an integer" if int in kinds else "a string"
            raise SettingsError(f"{config}: {key} must be {wanted}, not {value!r}")


def _space_keys() -> list[str]:
    """The ``SearchSpace`` arguments a ``[space]`` table may give (the data gives the
    input shape)."""
    import dataclasses

    from ..space import SearchSpace

    return sorted(f.name for f in dataclasses.fields(SearchSpace) if f.init)


@hookimpl
def hwnas_add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    d = DEFAULTS
    p = subparsers.add_parser(
        "search",
        help="search the architecture with the best accuracy within a latency budget "
        "measured on the board",
        description="Train candidates here, measure each on the board, keep the most "
        "accurate within the budget. Options may also come from --config search.toml "
        "(the same names with underscores, and a [space] table); flags win. "
        "--resume --out DIR continues a run with its own settings (search.json).",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="required: the run directory, e.g. runs/NAME",
    )
    p.add_argument(
        "--config", type=Path, metavar="FILE", help="search.toml with settings and a [space] table"
    )
    p.add_argument(
        "--target",
        action="append",
        metavar="NAME",
        help="board name, tag:X, or local; repeat it to search for several boards at once "
        f"(each candidate trained once, measured on every one) (default: {d['target']})",
    )
    data = p.add_mutually_exclusive_group()
    data.add_argument("--dataset", choices=["digits"], help="an offline demo dataset")
    data.add_argument(
        "--data", type=Path, metavar="FILE", help=".npz holding x, y (and x_test, y_test)"
    )
    p.add_argument(
        "--channels-first-ok",
        action="store_true",
        help="take the data file's x as it is although it looks channels-first (N, 1|3, H, W): its "
        "axes really are (N, H, W, C) (default: refused, with the transpose to apply)",
    )
    p.add_argument("--latency-budget-ms", type=float, metavar="X", help="default: no budget")
    p.add_argument(
        "--energy-budget-mj", type=float, metavar="Y", help="needs a power meter (default: none)"
    )
    p.add_argument(
        "--memory-budget-mb",
        type=float,
        metavar="M",
        help="weights + activations (default: the board's memory only)",
    )
    p.add_argument(
        "--latency-stat",
        choices=["p50", "p95", "p99", "mean"],
        help=f"the statistic the budget limits (default: {d['latency_stat']})",
    )
    p.add_argument(
        "--strategy",
        choices=["random", "evolution", "differentiable"],
        help=f"default: {d['strategy']}",
    )
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
    p.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help=f"default: {d['trials']} ({DIFFERENTIABLE_TRIALS} rounds for differentiable)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help=f"training epochs per candidate (default: {d['epochs']})",
    )
    p.add_argument("--batch-size", type=int, metavar="N", help=f"default: {d['batch_size']}")
    p.add_argument(
        "--optimizer", choices=["adam", "sgd", "adamw"], help=f"default: {d['optimizer']}"
    )
    p.add_argument("--lr", type=float, help="default: 0.01 for adam and adamw, 0.05 for sgd")
    p.add_argument("--seed", type=int, metavar="N", help=f"default: {d['seed']}")
    p.add_argument(
        "--min-time",
        type=float,
        metavar="S",
        help=f"timed loop per measurement (default: {d['min_time']})",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help=f"onnxruntime threads on the board (default: {d['threads']})",
    )
    p.add_argument(
        "--compress",
        action="store_true",
        help="last step: int8 and pruned variants of each target's model, measured there; "
        "the fastest within 1 point of accuracy ships (a [compress] table in search.toml "
        "sets tolerance, prune_ratios, ...; docs/compress.md) (default: off)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the search in --out with the settings in its search.json (a flag "
        "that contradicts them is refused; --trials may grow)",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        help="share the study with workers on other hosts: postgresql://user@host/db "
        "(docs/distributed.md); --trials is then the study's total (default: "
        "DIR/study.db)",
    )
    p.add_argument(
        "--study", metavar="NAME", help="the study's name in --storage (default: search)"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    r = subparsers.add_parser(
        "report",
        help="the Pareto plot and summary of a shared study, from the study alone",
        description="Write pareto.png, pareto.json and summary.md for the study NAME in "
        "--storage, from its trials (every worker's measurements are trial attributes).",
    )
    r.add_argument("--storage", required=True, metavar="URL", help="postgresql://user@host/db")
    r.add_argument("--study", required=True, metavar="NAME", help="required")
    r.add_argument("--out", required=True, type=Path, metavar="DIR", help="required")
    r.set_defaults(func=report)


def _started(out: Path) -> bool:
    """Whether ``out`` holds a search that got as far as its first trial (RunDir.check)."""
    models = out / "models"
    return (
        (out / "study.db").exists()
        or (out / "measurements.jsonl").exists()
        or (models.is_dir() and any(models.iterdir()))
    )


def _recorded(out: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(options, space, Searcher keywords) of the run in ``out``: search.json's settings,
    and the inputs command.json adds (data, compression, the shared study)."""
    from ..errors import SettingsError
    from ..files import read_file
    from ..loop.run_dir import MAX_RECORD_BYTES, read_record

    path = out / "search.json"
    record = read_record(path)  # never through a link, at most its cap, one line if damaged
    try:
        settings, train = record["settings"], record["settings"]["train"]
        constraints = dict(settings["constraints"])
        opts: dict[str, Any] = {
            "target": record["target"],
            "latency_budget_ms": constraints.pop("latency_ms", None),
            "energy_budget_mj": constraints.pop("energy_mj", None),
            "memory_budget_mb": constraints.pop("memory_mb", None),
            "latency_stat": settings["latency_stat"],
            "strategy": settings["strategy"],
            "trials": record["trials"],
            "epochs": train["epochs"],
            "batch_size": train["batch_size"],
            "optimizer": train["optimizer"],
            "lr": train["lr"],
            "seed": settings["seed"],
            "min_time": record["bench"]["min_time_s"],
            "threads": record["bench"]["threads"],
            "predictor": "on" if settings["predictor"] else "off",
            "lambda": settings["strategy_options"].get("lambda"),
        }
        keywords = {
            "validation_split": settings["validation_split"],
            "train_threads": train["threads"],
            "measure_rounds": record["measure_rounds"],
            "constraints": constraints,  # those the CLI has no flag for (flops, params)
        }
        space = dict(record["space"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SettingsError(f"cannot resume {out}: {path} is not a search record ({exc})") from exc
    command = out / COMMAND_FILE
    if command.is_file():
        try:
            inputs = json.loads(read_file(command, MAX_RECORD_BYTES))
            opts.update({k: inputs[k] for k in ("dataset", "data", "compress")})
            opts["channels_first_ok"] = bool(inputs.get("channels_first_ok", False))
            keywords.update({k: inputs.get(k) for k in ("storage", "study")})
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise SettingsError(f"cannot resume {out}: {command} is damaged ({exc})") from None
    return opts, space, keywords


def _refuse_contradictions(
    out: Path, recorded: dict[str, Any], given: dict[str, tuple[str, Any]]
) -> None:
    """A setting given again on resume must be the run's own (``trials`` may grow)."""
    from ..errors import SettingsError

    for key, (where, value) in given.items():
        if key in ("trials", "compress", "dataset", "data", "channels_first_ok"):
            continue  # the run's inputs: command.json's, or given again on purpose
        if key not in recorded:
            continue
        mine, theirs = value, recorded[key]
        if key == "target":
            mine = [value] if isinstance(value, str) else list(value)
            theirs = [theirs] if isinstance(theirs, str) else list(theirs)
        if mine != theirs:
            shown = theirs if key == "target" else recorded[key]
            raise SettingsError(
                f"cannot resume {out}: {where} {value!r} contradicts the run's {shown!r} "
                "(search.json); leave it out to keep the run's"
            )


def _options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(settings, space, extra Searcher keywords) from search.toml then the flags; on
    ``--resume`` the run's own settings come first."""
    from ..errors import SettingsError
    from ..files import owned_dir

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SettingsError(f"--out {out} is a file; give a directory for the run")
    if out.exists():  # another user's, or a link of theirs: one line, exit 2 (nothing made)
        owned_dir(out)
    file: dict[str, Any] = {}
    if args.config is not None:
        file = _read_config(args.config)
        _check_toml(args.config, file)
    space_file = file.pop("space", {})
    flags = {
        k: getattr(args, k)
        for k in DEFAULTS
        if getattr(args, k, None) is not None and getattr(args, k) is not False
    }  # store_true flags: False is unset
    given = {k: (f"{args.config}: {k} =", v) for k, v in file.items()}
    given.update({k: (_flag(k), v) for k, v in flags.items()})
    resumed = args.resume and (out / "search.json").is_file()
    recorded: dict[str, Any] = {}
    keywords: dict[str, Any] = {}
    space = {**DEFAULT_SPACE, **space_file}
    if resumed:
        recorded, space_recorded, keywords = _recorded(out)
        _refuse_contradictions(out, recorded, given)
        space = {**space_recorded, **space_file}  # a [space] that differs: refused by name
        if {"dataset", "data"} & set(given):  # the data given again wins (same fingerprint)
            recorded.pop("dataset", None)
            recorded.pop("data", None)
    opts = {**DEFAULTS, **recorded, **file}
    for key, value in flags.items():
        if key == "compress" and isinstance(opts[key], dict):
            continue  # --compress with a [compress] table: the table's settings
        opts[key] = value
    opts["out"] = out
    targets = opts["target"]
    opts["target"] = [targets] if isinstance(targets, str) else list(targets)
    if opts["dataset"] is None and opts["data"] is None:
        if resumed:
            raise SettingsError(
                f"cannot resume {out}: it does not record its data (no {COMMAND_FILE}): "
                "give --dataset digits or --data FILE again"
            )
        raise SettingsError("give --dataset digits or --data train.npz")
    if opts["data"] is not None:
        where = "--data" if "data" in given else f"the run's data ({out / COMMAND_FILE})"
        read_regular_file(Path(opts["data"]), where, None)
    _shared_study(args, out, keywords)
    if opts["predictor"] not in (None, "on", "off"):
        raise SettingsError(f"predictor must be on or off, not {opts['predictor']!r}")
    if opts["lambda"] is not None and opts["strategy"] != "differentiable":
        raise SettingsError(
            "--lambda weighs the differentiable search's loss: add --strategy differentiable"
        )
    if opts["strategy"] == "differentiable" and "trials" not in given and not resumed:
        opts["trials"] = DIFFERENTIABLE_TRIALS
    return opts, space, keywords


def _shared_study(args: argparse.Namespace, out: Path, keywords: dict[str, Any]) -> None:
    """--storage / --study, checked; on resume the run's study unless given."""
    from ..errors import SettingsError

    recorded_url, recorded_study = keywords.pop("storage", None), keywords.pop("study", None)
    if recorded_url and args.storage is None:
        raise SettingsError(
            f"cannot resume {out}: its study is in {recorded_url}: give --storage URL again "
            "(its password is not kept)"
        )
    if args.study is None and args.storage is not None:
        args.study = recorded_study
    if args.study is not None and args.storage is None:
        raise SettingsError("--study names a study in --storage: give --storage URL too")
    if args.storage is not None:
        from ..loop.shared import check_storage_url

        args.storage = check_storage_url(args.storage, "--storage")


def _write_command(args: argparse.Namespace, opts: dict[str, Any]) -> None:
    """command.json: what a resume needs beyond search.json (never a password)."""
    out = Path(opts["out"])
    if _started(out) and (not args.resume or (out / COMMAND_FILE).exists()):
        return  # the run's own record stays (a fresh search there is refused)
    from ..loop.shared import shown

    record = {
        "dataset": opts["dataset"],
        "data": str(Path(opts["data"]).resolve()) if opts["data"] is not None else None,
        "compress": opts["compress"],
        "channels_first_ok": bool(opts["channels_first_ok"]),
        "storage": shown(args.storage) if args.storage else None,
        "study": args.study,
    }
    from ..files import owned_dir, scan, write_file

    scan(owned_dir(out))  # before the first file is written: nothing planted is followed
    write_file(out / COMMAND_FILE, json.dumps(record, indent=2) + "\n")


def compress_option(value: bool | dict[str, Any], config: Path | None) -> Any:
    """``--compress`` / ``compress = true`` (the defaults), or a ``[compress]`` table of
    ``CompressSettings`` fields (``tolerance = 0.5``, ``prune_ratios = [0.5]``, ...)."""
    if not isinstance(value, dict):
        return bool(value)
    import dataclasses

    from ..compress import CompressSettings
    from ..errors import SettingsError

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
    from ..errors import DataError
    from ..training.data import class_count, to_nchw

    if data.x_test is None or data.y_test is None:
        return
    if len(data.x_test) != len(data.y_test):
        raise DataError(f"x_test holds {len(data.x_test)} samples but y_test {len(data.y_test)}")
    to_nchw(data.x_test, space.hwc)  # the shape of x, and finite
    classes = class_count(data.y, space.num_classes)
    if data.y_test.size and int(data.y_test.max()) >= classes:
        raise DataError(f"y_test has label {int(data.y_test.max())}; y has {classes} classes")


def run(args: argparse.Namespace) -> int:
    from ..errors import DataError, InfeasibleBudgetError, SearchError, SettingsError, SpaceError

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
    except KeyboardInterrupt:  # Ctrl-C: no finished trial is lost; say how to go on
        again = f"hwnas search --resume --out {shlex.quote(str(args.out))}"
        if getattr(args, "storage", None):
            from ..loop.shared import shown

            again += f" --storage {shlex.quote(shown(args.storage))}"
        print(f"hwnas: interrupted; continue the search with: {again}", file=sys.stderr)
        return 130


def _hidden(args: argparse.Namespace, text: str) -> str:
    """``text`` without the storage URL's password (a driver error may quote it)."""
    from hwnas_bench.lock_url import redact, url_password

    url = getattr(args, "storage", None)
    return redact(text, url_password(url) if url else None)


def report(args: argparse.Namespace) -> int:
    """``hwnas report --storage URL --study NAME --out DIR``."""
    from ..errors import SearchError, SettingsError

    try:
        from ..loop.report import report_study
        from ..loop.shared import check_storage_url, shown

        url = check_storage_url(args.storage)
        result = report_study(url, args.study, args.out)
    except SettingsError as exc:
        print(f"hwnas: error: {_hidden(args, str(exc).splitlines()[0])}", file=sys.stderr)
        return 2
    except SearchError as exc:
        print(f"hwnas: error: {_hidden(args, str(exc).splitlines()[0])}", file=sys.stderr)
        return 1
    from ..loop.report import final_line

    print(f"Study {args.study} in {shown(url)}: {args.out} (pareto.png, pareto.json, summary.md)")
    print(final_line(result))
    return 0


def _run(args: argparse.Namespace) -> int:
    opts, space_opts, keywords = _options(args)
    try:
        from ..api import Searcher
    except ImportError as exc:  # torch / optuna missing
        from ..errors import SearchError

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
    constraints = {
        **keywords.pop("constraints", {}),
        "latency_ms": opts["latency_budget_ms"],
        "energy_mj": opts["energy_budget_mj"],
        "memory_mb": opts["memory_budget_mb"],
    }
    from ..strategies import get_strategy

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
        **keywords,
    )
    if not args.quiet and not sys.stderr.isatty():  # a log, not a terminal: a line a trial
        stat = opts["latency_stat"]
        searcher.on_trial = lambda rec, _: print(trial_line(rec, stat), flush=True)
    _check_test_split(data, space)  # before the search, not after it has run
    if searcher.storage is not None:
        from ..loop.shared import shown

        print(f"study {searcher.study_name} in {shown(searcher.storage)}", file=sys.stderr)
    if args.resume and not (Path(opts["out"]) / "search.json").exists():
        print(f"hwnas: nothing to resume in {opts['out']}; starting a new search", file=sys.stderr)
    _write_command(args, opts)
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
        + ")"
    )
