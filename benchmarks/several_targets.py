"""What does searching two boards at once save? One two-target search against two
one-target searches of the same space, seed and trials, side by side in one run.

    python benchmarks/several_targets.py [--trials 12] [--epochs 5] [--min-time 0.25]

The two "boards" are this machine's local agent configured two ways (1 and 2 onnxruntime
threads, each its own ``[bench]`` table), so they act as two boards with different figures.
The two-target search trains each candidate once and measures it on both; the one-target
searches each train every candidate again. Printed: wall time of each way and their ratio,
the training seconds inside them (from each trial's record), and whether each
board's best model came out the same both ways (the same seed proposes the same
candidates, so it should, unless measurement noise reorders two near-equal ones).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hwnas_bench import TargetSpec
from search import Searcher, SearchSpace
from search.cli.search import DEFAULT_SPACE
from search.loop.result import SearchResult
from search.training.data import load_dataset

BOARDS = [
    TargetSpec("one-thread", "local", profile="local", bench={"threads": 1}),
    TargetSpec("two-threads", "local", profile="local", bench={"threads": 2}),
]


def _search(
    space: SearchSpace, targets: list[TargetSpec], out: Path, args: argparse.Namespace
) -> tuple[float, Searcher]:
    data = load_dataset("digits")
    searcher = Searcher(
        space,
        targets=targets,
        strategy="random",
        predictor=False,
        trials=args.trials,
        epochs=args.epochs,
        batch_size=64,  # the figures published before the defaults became 10 / 32
        seed=args.seed,
        out=out,
        bench={"min_time_s": args.min_time},
        progress=False,
    )
    start = time.perf_counter()
    searcher.search(data.x, data.y)
    return time.perf_counter() - start, searcher


def _train_s(result: SearchResult) -> float:
    return sum(r.train_s or 0.0 for r in result.trials)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    space = SearchSpace.from_dict({"input_shape": (8, 8, 1), **DEFAULT_SPACE})
    root = Path(tempfile.mkdtemp(prefix="hwnas-several-"))
    both_s, both = _search(space, BOARDS, root / "both", args)
    single = {t.name: _search(space, [t], root / t.name, args) for t in BOARDS}
    single_s = sum(s for s, _ in single.values())
    assert both.result is not None
    print(f"{args.trials} trials, {args.epochs} epochs, seed {args.seed}, runs in {root}")
    print(f"two targets in one search: {both_s:6.1f} s (training {_train_s(both.result):5.1f} s)")
    for name, (seconds, searcher) in single.items():
        assert searcher.result is not None
        print(
            f"{name} alone:{' ' * (20 - len(name))}{seconds:6.1f} s "
            f"(training {_train_s(searcher.result):5.1f} s)"
        )
    print(f"one search / two searches: {both_s / single_s:.2f}")
    for name, (_, searcher) in single.items():
        assert searcher.result is not None
        alone = searcher.result.best
        together = both.result.for_target(name).best
        same = alone is not None and together is not None and alone.hash == together.hash
        print(
            f"{name}: best alone {alone.candidate if alone else '-'} "
            f"({alone.latency_ms if alone else float('nan'):.4f} ms), "
            f"in the two-target search {together.candidate if together else '-'} "
            f"({together.latency_ms if together else float('nan'):.4f} ms): "
            + ("the same" if same else "different")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
