"""``hwnas deploy``: added to the ``hwnas`` command through the ``hwnas_add_commands`` hook.

Loaded by every ``hwnas`` start (it is a plugin), so it imports nothing heavy: the deploy
itself (:mod:`search.deploy`) loads only when the verb runs.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from hw_targets import hookimpl

from ..errors import SettingsError
from .common import say
from .errors import FAILED, run_verb


@hookimpl
def hwnas_add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "deploy",
        help="copy a run's model and model card to the target's board and re-measure it there",
        description="Copy RUN_DIR/targets/<NAME>/model.onnx and model_card.json to the board "
        "of target NAME (SFTP over SSH; over serial or local, the model into the agent's "
        "cache), re-measure the model there with the card's bench settings, and fail (exit "
        "1) when the fresh latency statistic is over the card's budget or differs from the "
        "card's by more than the measurements' spread (the larger p95 - p50 of the two, at "
        "least 10% and at most half of the card's figure). Every field of the card is "
        "checked, and the model's file type, size and sha256 against it, before anything is "
        "read or sent: a card or model that fails is refused (exit 2). Writes "
        "RUN_DIR/targets/<NAME>/deploy.json.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a search's output directory")
    p.add_argument("--target", "-t", required=True, help="the target (board name) to deploy")
    p.add_argument(
        "--path",
        default=None,
        metavar="DIR",
        help="SSH boards: the directory on the board (default ~/hwnas-models/<candidate hash>)",
    )
    p.add_argument("--config", type=Path, default=None, help="hwnas.toml to read")
    p.add_argument(
        "--lease-timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds to wait for a busy board (default 600)",
    )
    p.add_argument(
        "--allow-unmeasured-energy",
        action="store_true",
        help="deploy exits 1 when the card has an energy budget and the board measured no "
        "energy (no power meter there); with this flag the energy budget is not checked "
        "and a note says so (default: off)",
    )
    p.set_defaults(func=run)


@run_verb()
def run(args: argparse.Namespace) -> int:
    """The verb: 0 proven on the board, 1 a board failure or a measurement out of line,
    2 a mistake in the command, the run directory or the config."""
    from hwnas_bench import load_config

    from ..deploy import deploy_model

    if not (math.isfinite(args.lease_timeout) and args.lease_timeout > 0):
        raise SettingsError(f"--lease-timeout must be > 0 seconds, not {args.lease_timeout}")
    result = deploy_model(
        args.run_dir,
        args.target,
        path=args.path,
        config=load_config(args.config),
        lease_timeout=args.lease_timeout,
        allow_unmeasured_energy=args.allow_unmeasured_energy,
    )
    if not result.ok:
        say(f"hwnas: deploy FAILED on {result.board}: {result.reason}")
        say(f"  {result.figures()}")
        say(f"  fresh measurement in {result.record}")
        return FAILED
    print(f"Deployed to {result.board} ({result.transport}): model at {result.model_path}")
    if result.card_path is not None:
        print(f"  model card at {result.card_path}")
    for note in result.notes:
        print(f"  note: {note}")
    print(f"  proven on the board: {result.figures()}")
    print(f"  fresh measurement in {result.record}")
    return 0
