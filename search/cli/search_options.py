"""The settings of one ``hwnas search``: the defaults, then search.toml, then the flags;
on ``--resume`` the run's own record first. Every mistake found here is found before a
file is written."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from .resume import COMMAND_FILE, read_run, refuse_contradictions
from .search_flags import DEFAULT_SPACE, DEFAULTS, DIFFERENTIABLE_TRIALS, OBJECTIVES_OF, flag
from .search_toml import check_toml, read_config, read_regular_file


def options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(settings, space, extra Searcher keywords) from search.toml then the flags; on
    ``--resume`` the run's own settings come first."""
    from ..files import owned_dir

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SettingsError(f"--out {out} is a file; give a directory for the run")
    if out.exists():  # another user's, or a link of theirs: one line, exit 2 (nothing made)
        owned_dir(out)
    file: dict[str, Any] = {}
    if args.config is not None:
        file = read_config(args.config)
        check_toml(args.config, file)
    space_file = file.pop("space", {})
    flags = {
        k: getattr(args, k)
        for k in DEFAULTS
        if getattr(args, k, None) is not None and getattr(args, k) is not False
    }  # store_true flags: False is unset
    given = {k: (f"{args.config}: {k} =", v) for k, v in file.items()}
    given.update({k: (flag(k), v) for k, v in flags.items()})
    resumed = args.resume and (out / "search.json").is_file()
    recorded: dict[str, Any] = {}
    keywords: dict[str, Any] = {}
    # a stage space ([space.stages]) takes none of the flat space's defaults
    space = dict(space_file) if "stages" in space_file else {**DEFAULT_SPACE, **space_file}
    if resumed:
        recorded, space_recorded, keywords = read_run(out)
        recorded.update(recorded_training(out))
        recorded["objective"] = recorded_objective(out)
        refuse_contradictions(out, recorded, given)
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
    shared_study(args, out, keywords)
    if opts["predictor"] not in (None, "on", "off"):
        raise SettingsError(f"predictor must be on or off, not {opts['predictor']!r}")
    if opts["lambda"] is not None and opts["strategy"] != "differentiable":
        raise SettingsError(
            "--lambda weighs the differentiable search's loss: add --strategy differentiable"
        )
    if opts["strategy"] == "differentiable" and "trials" not in given and not resumed:
        opts["trials"] = DIFFERENTIABLE_TRIALS
    if opts["objective"] not in OBJECTIVES_OF:  # search.toml's (the flag has its choices)
        raise SettingsError(
            f"objective must be one of {', '.join(OBJECTIVES_OF)}, not {opts['objective']!r}"
        )
    keywords["objectives"] = OBJECTIVES_OF[opts["objective"]]  # Searcher(objectives=...)
    return opts, space, keywords


def recorded_objective(out: Path) -> str:
    """The run's --objective, from its search.json (a record without ``objectives``:
    latency, as every run before energy could be one)."""
    from ..loop.run_dir import read_record
    from ..settings import SearchSettings

    path = out / "search.json"
    try:
        objectives = SearchSettings.from_dict(read_record(path)["settings"]).objectives
    except (KeyError, TypeError, AttributeError) as exc:
        raise SettingsError(f"cannot resume {out}: {path} is not a search record ({exc})") from exc
    return next(flag for flag, known in OBJECTIVES_OF.items() if known == objectives)


def shared_study(args: argparse.Namespace, out: Path, keywords: dict[str, Any]) -> None:
    """--storage / --study, checked; on resume the run's study unless given."""
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


def recorded_training(out: Path) -> dict[str, Any]:
    """The training recipe's options in the run's search.json (read_run gives the others):
    keys an older record lacks read as what that run trained with (TrainSettings'
    LEGACY_TRAIN), so an old run resumes as it was, and a flag that contradicts is refused."""
    from ..loop.run_dir import read_record
    from ..settings import SearchSettings

    path = out / "search.json"
    try:
        train = SearchSettings.from_dict(read_record(path)["settings"]).train
    except (KeyError, TypeError, AttributeError) as exc:
        raise SettingsError(f"cannot resume {out}: {path} is not a search record ({exc})") from exc
    return {
        "schedule": train.schedule,
        "weight_decay": train.weight_decay,
        "label_smoothing": train.label_smoothing,
        "augment": train.augment,
        "flip_ok": train.flips,
        "final_epochs": train.final_epochs,
    }
