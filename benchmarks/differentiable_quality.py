"""Does one differentiable search land inside its budget? Three budgets on digits, `local`.

    python benchmarks/differentiable_quality.py [--at 0.25 0.5 0.75] [--rounds 5]
                                                [--epochs 3] [--seed 0] [--target local]
                                                [--space flat|stages|both]
                                                [--evolution-trials 40] [--stage-epochs 1]

(also run by ``benchmarks/search_quality.py``, whose default runs both parts.)

``--space stages`` (and ``both``, the default) runs the stage-space part (issue 20, item
4), described in :mod:`differentiable_stages`: per budget one differentiable search and
one evolution search of ``--evolution-trials``, both winners retrained, their test
accuracy, their landing in the budget and their device measurements side by side.

The flat part's space is the CLI's default (search/cli/search.py). Its smallest and largest
architectures that the supernet can derive (the bare classifier, and three 5x5 convolutions
of 32 channels with an fc layer of 64) are measured first, as the search measures a
candidate; the budgets lie ``--at`` of the way from one to the other, geometrically. For
each budget: one ``differentiable`` search (at most ``--rounds`` rounds: derive, train,
measure, correct), then one ``random`` search cut to the same number of device measurements
of whole models. Prints per budget: whether the best model as measured is inside the budget
and where (target: all three within 80-100% of the budget), the rounds' measured latencies
as a share of the budget, the device measurements (whole models, and the table's one-layer
ones: the table starts empty in a temporary cache, so the first budget pays for it), the
wall time, and the hypervolume of (validation accuracy, measured latency) from (0, budget)
relative to random's at the same number of measurements.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from search import InfeasibleBudgetError, Searcher, SearchSpace
from search.build import build
from search.cli.search import DEFAULT_SPACE
from search.measure import SEARCH_BENCH, Board, latency_of
from search.onnx_export import to_onnx
from search.records import MEASURED, TrialRecord
from search.space import Candidate
from search.training.data import load_dataset

BAND = (0.8, 1.0)
SMALLEST = "in8x8x1-out10"
LARGEST = "in8x8x1-conv_k5_s1_c32-conv_k5_s1_c32-conv_k5_s1_c32-fc_u64-out10"


def hypervolume(points: list[tuple[float, float]], budget: float) -> float:
    """Area dominated by (accuracy up, latency down) points, from (0, budget)."""
    area, best_lat = 0.0, budget
    for acc, lat in sorted((p for p in points if p[1] <= budget), reverse=True):
        if lat < best_lat:
            area += acc * (best_lat - lat)
            best_lat = lat
    return area


def extremes(target: str) -> tuple[float, float]:
    board = Board(target, bench=SEARCH_BENCH, purpose="benchmark extremes")
    try:
        board.connect()
        small, large = (
            latency_of(board.measure(to_onnx(build(Candidate.decode(e)))), "p50")
            for e in (SMALLEST, LARGEST)
        )
    finally:
        board.close()
    return small, large


def search(
    strategy: str, budget: float, trials: int, args: argparse.Namespace, out: Path
) -> Searcher:
    data = load_dataset("digits")
    searcher = Searcher(
        SearchSpace(input_shape=data.input_shape, **DEFAULT_SPACE),
        target=args.target,
        strategy=strategy,
        constraints={"latency_ms": budget},
        trials=trials,
        epochs=args.epochs,
        batch_size=32,
        seed=args.seed,
        out=out,
        progress=False,
    )
    with contextlib.suppress(InfeasibleBudgetError):
        searcher.search(data.x, data.y)
    return searcher


def points(records: list[TrialRecord]) -> list[tuple[float, float]]:
    return [(r.accuracy or 0.0, r.latency_ms or 0.0) for r in records]


def run_flat(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="differentiable-quality-") as tmp:
        os.environ["HWNAS_CACHE_DIR"] = str(Path(tmp) / "tables")  # the table starts empty
        small, large = extremes(args.target)
        print(
            f"differentiable: smallest {SMALLEST} {small:.4f} ms, largest {LARGEST} "
            f"{large:.4f} ms (p50, measured)",
            flush=True,
        )
        landed, ratios = 0, []
        for k, at in enumerate(args.at):
            budget = small * (large / small) ** at
            start = time.perf_counter()
            dnas = search("differentiable", budget, args.rounds, args, Path(tmp) / f"d{k}")
            wall = time.perf_counter() - start
            result = dnas.result
            assert result is not None
            measured = [r for r in result.trials if r.outcome == MEASURED]
            table = result.forecast.table.measured if result.forecast else 0
            best = result.best
            share = best.latency_ms / budget if best and best.latency_ms else None
            inside = share is not None and BAND[0] <= share <= BAND[1]
            landed += inside
            rounds = ", ".join(f"{(r.latency_ms or 0) / budget:.2f}" for r in measured)
            rnd = search("random", budget, max(10, 4 * len(measured)), args, Path(tmp) / f"r{k}")
            assert rnd.result is not None
            baseline = [r for r in rnd.result.trials if r.outcome == MEASURED][: len(measured)]
            hv_d = hypervolume(points(measured), budget)
            hv_r = hypervolume(points(baseline), budget)
            ratio = hv_d / hv_r if hv_r > 0 else float("inf")
            ratios.append(ratio)
            where = f"{share:.2f} x budget" if share is not None else "no model inside"
            print(
                f"budget {budget:.4f} ms ({at:.2f} of the way): best as measured {where} "
                f"({'inside 80-100%' if inside else 'NOT inside 80-100%'}), accuracy "
                f"{100 * (best.accuracy or 0) if best else 0:.1f}%; rounds measured at "
                f"[{rounds}] x budget; device measurements: {len(measured)} models + {table} "
                f"one-layer; {wall:.0f} s; hypervolume vs random at {len(baseline)} "
                f"measurements: {ratio:.2f} ({hv_d:.5f} / {hv_r:.5f})",
                flush=True,
            )
        print(
            f"differentiable landed inside 80-100% of {landed} of {len(args.at)} budgets "
            f"(target: all); hypervolume vs random, median {statistics.median(ratios):.2f}"
        )
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--at", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    p.add_argument("--rounds", type=int, default=5, help="most rounds of one search")
    p.add_argument("--space", choices=["flat", "stages", "both"], default="both")
    p.add_argument("--evolution-trials", type=int, default=40)
    p.add_argument("--stage-epochs", type=int, default=1, help="epochs of the stage part")
    p.add_argument(
        "--final-epochs", type=int, default=None, help="the winners' retraining (3x epochs)"
    )


def run(args: argparse.Namespace) -> int:
    """The flat part, the stage part, or both (``--space``)."""
    code = 0
    if getattr(args, "space", "flat") in ("flat", "both"):
        code = run_flat(args)
    if getattr(args, "space", "flat") in ("stages", "both"):
        import differentiable_stages  # benchmarks/ is on the path when run as a script

        code = differentiable_stages.run(args) or code
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", default="local")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
