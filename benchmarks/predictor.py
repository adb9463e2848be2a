"""The latency predictor on `local`: its error after N device measurements, and the table's cost.

    python benchmarks/predictor.py [--candidates 50] [--seed 0] [--rounds 3] [--no-repeat]
                                   [--plot PNG]

Draws N distinct valid random candidates from the CLI's default space (8x8x1 input, 10
classes), exports each with random weights (latency does not depend on them), fills a fresh
lookup table for them (its own temporary cache: every op is measured), then measures each
candidate on `local` with the search's settings (SEARCH_BENCH) and predicts it with the fit
of the candidates measured before it (a prospective error: candidate i's prediction uses
only candidates 0..i-1). Prints:

- the one-layer measurements the table needed (ops, and benchmarks: ROUNDS per op, each
  beside an overhead model);
- the error of the table's prior alone, of the prospective predictions and of the final
  fit left-one-out: share within ±10%, median, p90 and max;
- unless --no-repeat: every candidate measured again, and the share of those second
  measurements within ±10% of the first. No predictor agrees with a single measurement much
  more often than two measurements of one model agree with each other.

Candidates are measured as the search measures them (``Board.measure``): the median of
``--rounds`` timed loops (the search's default, 3) sharing SEARCH_BENCH's 0.25 s, back to
back; ``--rounds 1`` is one 0.25 s loop.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from search.build import build
from search.cli.search import DEFAULT_SPACE
from search.measure import ROUNDS as MEASURE_ROUNDS
from search.measure import SEARCH_BENCH, Board, latency_of
from search.onnx_export import to_onnx
from search.predict import LatencyTable, Predictor, PredictorError, candidate_ops
from search.predict.fit import MIN_FIT, choose
from search.predict.plot import plot_predictions
from search.predict.table import ROUNDS
from search.space import Candidate, SearchSpace

TARGET = 0.90
#: measurements before the per-kind correction may be used (fit.MIN_FIT)
WARMUP = MIN_FIT["kinds"]


def draw(n: int, seed: int) -> list[Candidate]:
    space = SearchSpace(input_shape=(8, 8, 1), num_classes=10, **DEFAULT_SPACE)
    rng = np.random.default_rng(seed)
    found: dict[str, Candidate] = {}
    for _ in range(100 * n):
        genes = {name: choices[rng.integers(len(choices))] for name, choices in space.genes.items()}
        c = space.decode(genes)
        if c.is_valid():
            found.setdefault(c.hash, c)
        if len(found) == n:
            break
    return list(found.values())


def measure(board: Board, models: list[bytes]) -> list[float]:
    """p50 of each model, measured as the search measures a candidate (Board.measure: the
    median of ``board.rounds`` timed loops sharing SEARCH_BENCH's min_time_s)."""
    return [latency_of(board.measure(m, name="candidate"), "p50") for m in models]


def row(name: str, err: PredictorError | None) -> str:
    if err is None:
        return f"{name:44s} -"
    return (
        f"{name:44s} {100 * err.within_10:5.0f}%  {err.median_abs_pct:6.1f}%  "
        f"{err.p90_abs_pct:6.1f}%  {err.max_abs_pct:6.1f}%"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rounds",
        type=int,
        default=MEASURE_ROUNDS,
        help=f"timed loops per candidate measurement, the median kept (the search's: "
        f"{MEASURE_ROUNDS}; 1 = one SEARCH_BENCH loop)",
    )
    p.add_argument("--no-repeat", action="store_true", help="skip the second measurements")
    p.add_argument("--plot", type=Path, help="write predicted-vs-measured here (PNG)")
    args = p.parse_args(argv)
    candidates = draw(args.candidates, args.seed)
    models = [to_onnx(build(c, seed=args.seed)) for c in candidates]
    board = Board("local", bench=SEARCH_BENCH, purpose="benchmark predictor", rounds=args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        board.connect()
        table = LatencyTable.for_board(board, "p50", Path(tmp) / "run", cache_dir=Path(tmp))
        ops = [op for c in candidates for op in candidate_ops(c)]
        start = time.perf_counter()
        table.ensure(ops, board)
        fill_s = time.perf_counter() - start

        start = time.perf_counter()
        first = measure(board, models)
        measure_s = time.perf_counter() - start
        second = [] if args.no_repeat else measure(board, models)
        board.close()

    predictor = Predictor(table)
    for c, y_ms in zip(candidates, first, strict=True):
        predictor.observe(predictor.predict(c), c, y_ms, None)
    obs = predictor.observations
    features = np.asarray([o.features for o in obs])
    y = np.asarray(first)
    loo = []
    for i in range(len(y)):  # the whole choice (model and fit) redone without candidate i
        rest = np.arange(len(y)) != i
        fit, _ = choose(features[rest], y[rest])
        loo.append(float(fit.predict(features[i])[0]))
    prospective = predictor.error()

    print(f"{len(candidates)} candidates (seed {args.seed}) from the CLI's default space, 8x8x1")
    print(
        f"one-layer measurements: {table.measured} ops ({len(table.entries) - 1} layers + the "
        f"overhead), {table.benches} benchmarks ({ROUNDS} rounds, each op beside the overhead "
        f"model), {fill_s:.1f} s"
    )
    how = (
        "SEARCH_BENCH"
        if args.rounds == 1
        else (
            f"the median of {args.rounds} back-to-back loops of SEARCH_BENCH, min_time_s "
            f"{SEARCH_BENCH.min_time_s / args.rounds:.3g} each (as the search measures)"
        )
    )
    print(f"candidate measurements: {len(y)}, each {how}, {measure_s:.1f} s")
    print(f"{'p50 latency, |predicted - measured| / measured':44s} ±10%   median     p90     max")
    print(row("table prior alone", PredictorError.of([o.prior_ms for o in obs], first)))
    print(row("prospective (fit on the ones before)", prospective))
    warm = obs[WARMUP:]
    late = PredictorError.of([o.predicted_ms for o in warm], [o.measured_ms for o in warm])
    print(row(f"prospective, candidates after the first {WARMUP}", late))
    print(row("final fit, leave-one-out", PredictorError.of(loo, first)))
    if second:
        print(row("a second measurement vs the first", PredictorError.of(second, first)))
        mean = (np.asarray(first) + np.asarray(second)) / 2
        print(row("final fit, left-one-out, vs mean of both", PredictorError.of(loo, list(mean))))
    print(f"final correction: {predictor.describe()}")
    print(f"leave-one-out share within ±10% of each model: {predictor.tried}")
    if args.plot:
        plot_predictions(predictor, args.plot, stat="p50", board="local")
        print(f"plot: {args.plot}")
    # the target reads "after 50 device measurements": the predictor fitted on them, judged
    # on candidates it was not fitted on (leave-one-out); the running (prospective) figure
    # also counts the first candidates, predicted from a handful of measurements
    final = PredictorError.of(loo, first)
    for name, err in (
        ("after all measurements, leave-one-out", final),
        ("prospective", prospective),
    ):
        met = err is not None and err.within_10 >= TARGET
        share = f"{100 * err.within_10:.0f}%" if err is not None else "-"
        print(
            f"target >= {100 * TARGET:.0f}% within ±10% ({name}): {share}, "
            f"{'met' if met else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
