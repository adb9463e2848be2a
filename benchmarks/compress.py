"""Does compression pay on this board? int8 / fp32 and pruned / unpruned, measured.

    python benchmarks/compress.py [--run runs/digits] [--trials 12] [--epochs 10]
                                  [--large-epochs 5] [--rounds 5] [--min-time 0.3]
                                  [--target local] [--json OUT.json] [--max-load 1.0]

Two models, each compressed with ``search.compress.compress_searched`` (fp32, int8 static
with precision calibration, int8 dynamic where fc-heavy, pruned 25% / 50% with a short
fine-tune, pruned + int8), every variant measured on the board in interleaved rounds:

1. the demo's best model: ``best.onnx`` of ``--run`` (a run of the README's
   ``hwnas search --dataset digits --latency-budget-ms 0.05``), or, without ``--run``, the
   best of the same search here with ``--trials`` trials;
2. a conv model of >= 5 ms on this machine (four 3x3 convolutions, 64 to 256 channels, on
   digits upscaled to 32x32; the convolutions hold 99% of its multiply-accumulates),
   trained here for ``--large-epochs`` epochs.

Before each model's measurements it waits (up to ``--quiet-wait`` s) for the host's 1-min
load average to drop below ``--max-load``, and prints the load seen while measuring.
Prints each model's table, then per model the latency ratios (to fp32: the p50 over every
sample of every round, as the choice takes it; pruned / int8: the median of the per-round
p50 ratios) with the accuracy drop of each, and whether the larger model meets
the target: the chosen variant <= 0.6 of fp32's p50 at <= 1 point of accuracy drop.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from search import Searcher, SearchSpace
from search.build import build
from search.cli.search import DEFAULT_SPACE
from search.compress import CompressionResult, CompressSettings, Variant, compress_searched
from search.measure import Board, bench_settings
from search.onnx_export import from_onnx
from search.space import Candidate
from search.training.data import Split, load_dataset, split, to_nchw
from search.training.train import TrainSettings, train

LARGE = (
    "in32x32x1-conv_k3_s1_c64-conv_k3_s1_c128-pool_k2_s2-conv_k3_s1_c192-conv_k3_s1_c256"
    "-pool_k2_s2-pool_k2_s2-fc_u128-out10"
)
TARGET_RATIO, TARGET_DROP = 0.6, 1.0


def _log(line: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def quiet_host(max_load: float, max_wait_s: float) -> float:
    """Wait until the 1-min load average is below ``max_load`` (other work on this 2-core
    host inflates the long models' timings far more than the short ones'); returns it."""
    deadline = time.monotonic() + max_wait_s
    load = os.getloadavg()[0]
    while load >= max_load and time.monotonic() < deadline:
        time.sleep(5)
        load = os.getloadavg()[0]
    return load


def make_log(args: argparse.Namespace) -> Any:
    def log(line: str) -> None:
        _log(line)
        if line.startswith("measuring"):  # compress_searched measures right after this line
            load = quiet_host(args.max_load, args.quiet_wait)
            _log(f"host load {load:.1f} (wanted < {args.max_load:g})")

    return log


def demo_model(args: argparse.Namespace, data: Any) -> Any:
    """The demo's best CandidateNet: from --run, else a demo search here."""
    if args.run is not None:
        return from_onnx((args.run / "best.onnx").read_bytes())
    space = SearchSpace.from_dict({"input_shape": data.input_shape, **DEFAULT_SPACE})
    searcher = Searcher(
        space,
        target=args.target,
        constraints={"latency_ms": 0.05},
        trials=args.trials,
        epochs=args.epochs,
        batch_size=32,
        bench={"min_time_s": 0.25, "threads": 1},
        progress=False,
    )
    _log(f"demo search: {args.trials} trials, {args.epochs} epochs, budget 0.05 ms")
    best = searcher.search(data.x, data.y)
    assert searcher.result is not None
    _log(f"demo search run directory: {searcher.result.out} (--run reuses it)")
    return best.module


def large_model(args: argparse.Namespace, digits: Any) -> tuple[Any, Split]:
    """The >= 5 ms conv model, trained on digits upscaled 4x (nearest) to 32x32."""
    h = Candidate.decode(args.large).input_shape[0]
    x = to_nchw(digits.x, (8, 8, 1))
    x = np.ascontiguousarray(np.kron(x, np.ones((1, 1, h // 8, h // 8), np.float32)))
    data = split(x, digits.y, 0.2, 0)
    net = build(Candidate.decode(args.large))
    _log(f"training the large model {args.large_epochs} epochs (adam, lr 1e-3)")
    result = train(
        net, data, TrainSettings(lr=1e-3, epochs=args.large_epochs, batch_size=64, threads=2)
    )
    _log(f"large model: validation accuracy {100 * result.val_accuracy:.1f}%")
    return net, data


def _round_ratio(a: Variant, b: Variant) -> float | None:
    """Median over rounds of a's p50 / b's p50 in the same round."""
    pairs = list(zip(a.timing.round_p50_ms, b.timing.round_p50_ms, strict=False))
    if not pairs or len(pairs) != len(a.timing.round_p50_ms):
        return None
    return statistics.median(x / y for x, y in pairs)


def ratios(result: CompressionResult) -> list[tuple[str, float | None, float | None]]:
    """(what, latency ratio, accuracy drop in points) for int8/fp32 and pruned/unpruned."""
    fp32, int8 = result.fp32, result.variant("int8")
    out: list[tuple[str, float | None, float | None]] = []
    for v in result.variants[1:]:
        drop = v.drop_points(fp32)
        if v.name.startswith("pruned") and v.name.endswith("_int8"):
            out.append((f"{v.name} / fp32", v.timing.ratio, drop))
            out.append((f"{v.name} / int8 (pruned / unpruned)", _round_ratio(v, int8), drop))
        elif v.name.startswith("pruned"):
            out.append((f"{v.name} / fp32 (pruned / unpruned)", v.timing.ratio, drop))
        else:
            out.append((f"{v.name} / fp32", v.timing.ratio, drop))
    return out


def report(title: str, result: CompressionResult) -> dict[str, Any]:
    print(f"\n== {title}: {from_onnx(result.fp32.model).candidate.encode()}")
    print(f"fp32 p50 {result.fp32.timing.p50_ms:.4f} ms on {result.board}")
    loads = [
        m.environment.load_avg_start[0]
        for v in result.variants
        for m in v.timing.measurements
        if m.environment.load_avg_start
    ]
    if loads:  # other work on the host shows in p95 first; the ratios are per round
        print(f"host load (1-min average) while measuring: {min(loads):.1f} to {max(loads):.1f}")
    print(result.table())
    print("Latency ratios (vs fp32: p50 of all rounds; vs int8: median of per-round p50 ratios),")
    print("accuracy drop vs fp32:")
    rows = ratios(result)
    for what, ratio, drop in rows:
        r = "n/a" if ratio is None else f"x{ratio:.2f}"
        d = "n/a" if drop is None else f"{drop:+.1f} points"
        print(f"  {what:<40} {r:>7}   {d}")
    int8 = result.variant("int8").timing.ratio
    if int8 is not None and int8 >= 1.0:
        print(f"  ORT int8 is not faster than fp32 for this model on this CPU (x{int8:.2f})")
    return {
        "model": result.model_name,
        "fp32_p50_ms": result.fp32.timing.p50_ms,
        "chosen": result.chosen.name,
        "ratios": [{"what": w, "ratio": r, "drop_points": d} for w, r, d in rows],
        "compression": result.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="a demo run directory with best.onnx")
    p.add_argument("--trials", type=int, default=12, help="demo search trials (without --run)")
    p.add_argument("--epochs", type=int, default=10, help="demo search epochs per candidate")
    p.add_argument("--large", default=LARGE, help="the larger model's candidate encoding")
    p.add_argument("--large-epochs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.3)
    p.add_argument("--target", default="local")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--max-load", type=float, default=1.0, help="wait for a load below this")
    p.add_argument("--quiet-wait", type=float, default=300.0, help="wait at most S seconds")
    args = p.parse_args(argv)
    digits = load_dataset("digits")
    settings = CompressSettings(rounds=args.rounds)
    board = Board(args.target, bench=bench_settings({"min_time_s": args.min_time}))
    figures: dict[str, Any] = {}
    try:
        demo_split = split(to_nchw(digits.x, (8, 8, 1)), digits.y, 0.2, 0)
        demo = demo_model(args, digits)
        _log("compressing the demo's best model")
        log = make_log(args)
        small = compress_searched(demo, demo_split, board, settings=settings, log=log)
        figures["demo"] = report("Demo's best model", small)
        net, data = large_model(args, digits)
        _log("compressing the large model")
        large = compress_searched(net, data, board, settings=settings, log=log)
        figures["large"] = report("Conv model of >= 5 ms", large)
    finally:
        board.close()
    chosen = large.chosen
    ratio = chosen.timing.ratio or 1.0
    drop = chosen.drop_points(large.fp32) or 0.0
    met = ratio <= TARGET_RATIO and drop <= TARGET_DROP
    verdict = "met" if met else "NOT met"
    print(
        f"\nTarget on the larger model (chosen <= x{TARGET_RATIO} of fp32 at <= {TARGET_DROP:g} "
        f"point drop): {verdict}: {chosen.name} at x{ratio:.2f}, drop {drop:+.1f} points"
    )
    if large.fp32.timing.p50_ms is not None and large.fp32.timing.p50_ms < 5.0:
        print(f"note: the larger model measured {large.fp32.timing.p50_ms:.2f} ms (< 5 ms) here")
    figures["target_met"] = met
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
