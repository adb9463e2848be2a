"""What ``hwnas search --resume --out DIR`` takes from the run: search.json's settings, and
command.json, the inputs the CLI adds (data, compression, the shared study) so that no
other flag is needed; a flag that contradicts them is refused."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import SettingsError

#: what the CLI adds to the run directory: the inputs search.json does not hold, so that
#: ``--resume --out DIR`` needs no other flag
COMMAND_FILE = "command.json"


def started(out: Path) -> bool:
    """Whether ``out`` holds a search that got as far as its first trial (RunDir.check)."""
    models = out / "models"
    return (
        (out / "study.db").exists()
        or (out / "measurements.jsonl").exists()
        or (models.is_dir() and any(models.iterdir()))
    )


def read_run(out: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(options, space, Searcher keywords) of the run in ``out``: search.json's settings,
    and the inputs command.json adds (data, compression, the shared study)."""
    from ..files import read_file
    from ..loop.run_dir import MAX_RECORD_BYTES, read_record

    path = out / "search.json"
    record = read_record(path)  # never through a link, at most its cap, one line if damaged
    try:
        from ..settings import SearchSettings

        settings = SearchSettings.from_dict(record["settings"])
        budgets, train = settings.budgets, settings.train
        opts: dict[str, Any] = {
            "target": record["target"],
            "latency_budget_ms": budgets.latency_ms,
            "energy_budget_mj": budgets.energy_mj,
            "memory_budget_mb": budgets.memory_mb,
            "latency_stat": budgets.stat,
            "strategy": settings.strategy,
            "trials": record["trials"],
            "epochs": train.epochs,
            "batch_size": train.batch_size,
            "optimizer": train.optimizer,
            "lr": train.lr,
            "seed": settings.seed,
            "min_time": record["bench"]["min_time_s"],
            "threads": record["bench"]["threads"],
            "predictor": "on" if settings.predictor else "off",
            "lambda": settings.strategy_options.get("lambda"),
        }
        keywords = {
            "validation_split": settings.validation_split,
            "train_threads": train.threads,
            "measure_rounds": record["measure_rounds"],
            "budgets": budgets,  # with those the CLI has no flag for (flops, params)
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


def refuse_contradictions(
    out: Path, recorded: dict[str, Any], given: dict[str, tuple[str, Any]]
) -> None:
    """A setting given again on resume must be the run's own (``trials`` may grow)."""
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


def write_command(args: argparse.Namespace, opts: dict[str, Any]) -> None:
    """command.json: what a resume needs beyond search.json (never a password)."""
    out = Path(opts["out"])
    if started(out) and (not args.resume or (out / COMMAND_FILE).exists()):
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
