"""The ``hwnas search`` option table: each flag, its help, and the defaults a flag, search.toml
and a resumed run's record are merged over (:mod:`.search_options`). Light: loaded by every
``hwnas`` start."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..measure import SEARCH_BENCH
from ..settings import DEFAULT_OBJECTIVES, ENERGY_OBJECTIVES, SearchSettings
from ..training.settings import AUGMENTS, FINAL_EPOCHS_FACTOR, SCHEDULES, TrainSettings
from .common import LATENCY_STATS, add_measure_options

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

_SEARCH, _TRAIN = SearchSettings(), TrainSettings()
#: option -> default, for options that search.toml may also set: the settings' own
#: defaults (SearchSettings, TrainSettings, the search's bench), never written twice
DEFAULTS: dict[str, Any] = {
    "target": "local",
    "dataset": None,
    "data": None,
    "latency_budget_ms": None,
    "energy_budget_mj": None,
    "memory_budget_mb": None,
    "latency_stat": _SEARCH.latency_stat,
    "objective": "latency",  #: what is minimised with accuracy kept up (OBJECTIVES_OF)
    "strategy": _SEARCH.strategy,
    "trials": _SEARCH.trials,
    "epochs": _TRAIN.epochs,
    "batch_size": _TRAIN.batch_size,
    "optimizer": _TRAIN.optimizer,
    "lr": _TRAIN.lr,
    "schedule": _TRAIN.schedule,
    "weight_decay": _TRAIN.weight_decay,
    "label_smoothing": _TRAIN.label_smoothing,
    "augment": _TRAIN.augment,
    "flip_ok": _TRAIN.flips,  #: mirror training samples too (store_true: False is unset)
    "final_epochs": _TRAIN.final_epochs,  #: None: FINAL_EPOCHS_FACTOR x epochs
    "seed": _SEARCH.seed,
    "out": None,
    "min_time": SEARCH_BENCH.min_time_s,
    "threads": SEARCH_BENCH.threads,
    "predictor": None,  #: "on" / "off"; None: the strategy's default (on for evolution)
    "lambda": None,  #: differentiable: a fixed latency weight instead of the calibrated one
    "compress": False,  #: compress each target's model as the last step
    "channels_first_ok": False,  #: take an x that looks channels-first as it is
}
#: --objective -> the study's objectives (SearchSettings.objectives)
OBJECTIVES_OF: dict[str, tuple[str, ...]] = {
    "latency": DEFAULT_OBJECTIVES,
    "energy": ENERGY_OBJECTIVES,
}
#: rounds of a differentiable search (derive, train, measure, correct) unless --trials says
DIFFERENTIABLE_TRIALS = 5


def flag(key: str) -> str:
    """``latency_budget_ms`` -> ``--latency-budget-ms``."""
    return "--" + key.replace("_", "-")


def add_search_parser(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
) -> argparse.ArgumentParser:
    """``hwnas search``'s parser, its function still to set."""
    d = DEFAULTS
    p: argparse.ArgumentParser = subparsers.add_parser(
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
        choices=LATENCY_STATS,
        help=f"the statistic the budget limits (default: {d['latency_stat']})",
    )
    p.add_argument(
        "--objective",
        choices=list(OBJECTIVES_OF),
        help="what the search minimises while it keeps accuracy up: latency, or energy: "
        "measured latency and measured energy per inference, a third objective (needs a "
        f"power meter; evolution or random only) (default: {d['objective']})",
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
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help="the learning rate over the run: cosine anneals it to 0, constant keeps it "
        f"(default: {d['schedule']})",
    )
    p.add_argument(
        "--weight-decay",
        type=float,
        metavar="X",
        help=f"L2 on conv and fc weights, never biases or norms (default: {d['weight_decay']:g})",
    )
    p.add_argument(
        "--label-smoothing",
        type=float,
        metavar="X",
        help=f"in [0, 1): smooth the training targets (default: {d['label_smoothing']:g})",
    )
    p.add_argument(
        "--augment",
        choices=AUGMENTS,
        help="shift: move each training sample by up to 1/8 of each spatial axis; none: "
        f"as they are (default: {d['augment']})",
    )
    p.add_argument(
        "--flip-ok",
        action="store_true",
        help="also mirror training samples (images left-right, 1-D windows in time): only "
        "where that keeps the class (default: off)",
    )
    p.add_argument(
        "--final-epochs",
        type=int,
        metavar="N",
        help="retrain each board's best on train+validation for N epochs before it ships, "
        f"re-measured; 0: ship the searched model (default: {FINAL_EPOCHS_FACTOR}x --epochs)",
    )
    p.add_argument("--seed", type=int, metavar="N", help=f"default: {d['seed']}")
    add_measure_options(p, min_time=d["min_time"], threads=d["threads"])
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
    return p
