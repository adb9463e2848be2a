"""``hwnas compress``: added to the ``hwnas`` command through the ``hwnas_add_commands`` hook.

Loaded by every ``hwnas`` start (it is a plugin), so it imports nothing heavy: onnxruntime's
quantizer, torch and Torch-Pruning load only when a compression runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hw_targets import hookimpl

from ..errors import SearchError, SettingsError
from .common import LATENCY_STATS, add_measure_options, bench_overrides, say
from .errors import run_verb


def _ratios(text: str) -> tuple[float, ...]:
    """``25,50`` or ``0.25,0.5`` (percent or fractions); ``none`` for no pruning."""
    if text.strip().lower() in ("", "none", "off"):
        return ()
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of ratios: {text!r}") from None
    return tuple(v / 100 if v >= 1 else v for v in values)


@hookimpl
def hwnas_add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "compress",
        help="int8-quantize and prune an ONNX classifier; measure every variant on the board "
        "and keep the fastest within the accuracy tolerance",
        description="Make the variants of MODEL (fp32, int8 static with calibration and "
        "sensitive layers kept in float, int8 dynamic for fc-heavy models, and, for models "
        "the search made, pruned ones at several ratios and pruned + int8), measure each on "
        "the board (interleaved rounds) and evaluate each for accuracy. The chosen variant "
        "is the fastest (or lowest-energy) one whose accuracy drop is within the tolerance "
        "and that is faster than fp32 in every round (--stat, beyond the spread of both); "
        "when nothing is, or with one round, fp32 is kept and the table says why. Writes "
        "<variant>.onnx and compression.json into --out and prints the table.",
    )
    p.add_argument("model", type=Path, metavar="MODEL.onnx", help="an ONNX classifier")
    p.add_argument("--target", default="local", help="board name, tag:X, or local (default)")
    p.add_argument(
        "--calibration",
        type=Path,
        required=True,
        metavar="DATA.npz",
        help="x laid out as the model's input (e.g. N,C,H,W) and integer labels y",
    )
    p.add_argument(
        "--eval",
        type=Path,
        metavar="DATA.npz",
        help="x and y to measure accuracy on (default: the calibration data)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        metavar="POINTS",
        help="accuracy drop allowed, in percentage points (default 1.0)",
    )
    p.add_argument("--objective", choices=["latency", "energy"], default="latency")
    p.add_argument(
        "--stat",
        choices=LATENCY_STATS,
        default="p50",
        help="the latency statistic variants are compared on (default p50; a search's "
        "--compress uses the search's)",
    )
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="default: MODEL's folder/<stem>-compressed"
    )
    p.add_argument(
        "--methods",
        default="minmax,entropy,percentile",
        help="calibration methods to try; the most accurate wins (default: all three)",
    )
    p.add_argument("--per-tensor", action="store_true", help="per-tensor int8 weights")
    p.add_argument("--dynamic", choices=["auto", "on", "off"], default="auto")
    p.add_argument(
        "--prune",
        type=_ratios,
        default=(0.25, 0.5),
        metavar="RATIOS",
        help="pruning ratios for the search's models, e.g. 25,50 (default) or none",
    )
    p.add_argument("--importance", choices=["l1", "taylor"], default="l1")
    p.add_argument("--fine-tune-epochs", type=int, default=2, metavar="N")
    p.add_argument("--rounds", type=int, default=3, metavar="N", help="interleaved rounds")
    add_measure_options(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no step lines")
    p.set_defaults(func=run)


@run_verb()
def run(args: argparse.Namespace) -> int:
    """The verb: 0 done, 2 a mistake in the command or the files, 1 anything else."""
    try:
        from ..compress import CompressSettings, compress_onnx
        from ..measure import Board, bench_settings
    except ImportError as exc:  # torch / onnx missing
        raise SearchError(
            f"compress needs the search extra: pip install 'hwnas-bench[search]' ({exc})"
        ) from exc
    bench = bench_settings(bench_overrides(args.min_time, args.threads))
    settings = CompressSettings(
        tolerance=args.tolerance,
        objective=args.objective,
        latency_stat=args.stat,
        per_channel=not args.per_tensor,
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        dynamic=args.dynamic,
        prune_ratios=tuple(args.prune),
        importance=args.importance,
        fine_tune_epochs=args.fine_tune_epochs,
        rounds=args.rounds,
        bench=bench,
    )
    settings.validate()  # before the board is leased or any file is read
    out = args.out or args.model.parent / f"{args.model.stem}-compressed"
    if out.exists() and not out.is_dir():
        raise SettingsError(f"--out {out} is a file; give a directory for the variants")
    # choosing by energy: every window covers the board's meter (no meter: refused here)
    board = Board(args.target, bench=bench, purpose="compress", energy=args.objective == "energy")
    board.farm.candidates(args.target)  # an unknown target: refused before the calibration
    log = None if args.quiet else say
    try:
        result = compress_onnx(
            args.model,
            board,
            calibration=args.calibration,
            evaluation=args.eval,
            settings=settings,
            out=out,
            log=log,
        )
    finally:
        board.close()
    print(result.table())
    print(f"Variants and compression.json in {out}")
    return 0
