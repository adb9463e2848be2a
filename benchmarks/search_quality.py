"""Does evolution beat random search on the stage space, at equal device measurements?

    python benchmarks/search_quality.py [--runs 5 | --seeds 0 1 2 3 4] [--trials 20]
        [--epochs 1] [--min-time 0.2] [--latency-budget-ms X | --budget-quantile 0.5]
        [--calibration 24] [--target local] [--keep DIR]
        [--part all|evolution|differentiable] [--at 0.25 0.5 0.75] [--rounds 5]

``--part differentiable`` is benchmarks/differentiable_quality.py (three budgets, one
differentiable search each; its docstring says how), run with ``--differentiable-epochs``,
--target and the first seed. The rest of this text is the evolution part.

Space and data: benchmarks/vs_reference.py's stage space (a stride-2 stem, two inverted
residual stages and a residual stage, width multipliers 0.5/0.75/1, input resolutions
16/24/32; 2.5 million choice combinations) on digits resized to 32x32x3, as vs_reference.py
does. Training is a proxy: ``--epochs`` (default 1) of the search's recipe on 1 thread, no
retraining of the winner (``final_epochs=0``: it is no part of the comparison).

Budget: with no ``--latency-budget-ms``, ``--calibration`` candidates drawn at random (a
seed of their own, not the searches') are exported untrained and measured as the search
measures; the budget is the ``--budget-quantile`` of their p50s (default the median: about
half of the space's random candidates are over it). These calibration measurements are
shared by both strategies and counted apart from either.

Device measurements: neither strategy uses the latency predictor (``predictor=False``), so
neither opens the per-layer table and there are no table fills (checked: the script stops
if a run directory holds a latency table). A strategy's measurements are the lines of its
``measurements.jsonl``: one per measured candidate (``measure_rounds`` timed loops each,
more where its interval straddles the budget: the timed rounds are printed too); a
repeated candidate is not measured again and costs nothing.

Each run (one seed) searches with ``random`` and with ``evolution`` in lock-step, one trial
each in turn, so load that comes and goes on the host falls on both alike; the same seed
gives both the same split and the same training of any candidate both try. Both are cut to
the first M device measurements, M the smaller of the two counts, and compared there by

- the hypervolume of (validation accuracy, measured latency) over the reference point
  (accuracy 0, latency = the budget): over-budget candidates add nothing; evolution /
  random, target >= 1.2 in at least 4 of 5 runs;
- the best validation accuracy within the budget: target evolution >= random + 1 point
  (on the mean over runs, and per run as shown).

Also printed: each run's counts, the latency noise (candidates both runs measured; the
first generation of evolution is random's seeded draw), and a line per target saying met
or NOT met.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import differentiable_quality  # benchmarks/ is on the path when run as a script
import vs_reference

from search import Budgets, InfeasibleBudgetError, Searcher, SearchSpace
from search.build import build
from search.measure import Board, bench_settings, latency_of
from search.onnx_export import to_onnx
from search.records import MEASURED, TrialRecord
from search.training.data import Arrays
from search.training.settings import TrainSettings

STRATEGIES = ("random", "evolution")
#: the targets of issue 20
HV_TARGET, HV_RUNS_NEEDED, ACC_POINTS = 1.2, 4, 1.0
#: the calibration draws' own seed (the searches draw from seeds 0, 1, ...)
CALIBRATION_SEED = 10_000


def hypervolume(points: list[tuple[float, float]], budget: float) -> float:
    """Area dominated by (accuracy up, latency down) points, from (0, budget)."""
    area, best_lat = 0.0, budget
    for acc, lat in sorted((p for p in points if p[1] <= budget), reverse=True):
        if lat < best_lat:
            area += acc * (best_lat - lat)
            best_lat = lat
    return area


def best_accuracy(records: list[TrialRecord], budget: float) -> float | None:
    within = [r.accuracy for r in records if r.latency_ms is not None and r.latency_ms <= budget]
    return max((a for a in within if a is not None), default=None)


class Turns:
    """Runs the searches of one seed in lock-step, a trial each in turn, so that load that
    comes and goes on the host (other work starting or stopping) falls on both strategies
    alike rather than on whichever ran second. Only one trains or measures at a time."""

    def __init__(self, names: list[str]) -> None:
        self.names, self.turn, self.done = names, 0, set[str]()
        self.cv = threading.Condition()

    def wait(self, name: str) -> None:
        with self.cv:
            self.cv.wait_for(lambda: self.names[self.turn] == name)

    def pass_on(self, name: str, *, finished: bool = False) -> None:
        with self.cv:
            if finished:
                self.done.add(name)
            for k in range(1, len(self.names) + 1):
                nxt = (self.turn + k) % len(self.names)
                if self.names[nxt] not in self.done:
                    self.turn = nxt
                    break
            self.cv.notify_all()


def search_space(data: Arrays) -> SearchSpace:
    return SearchSpace(input_shape=data.input_shape, stages=vs_reference.stage_space())


def calibrate(args: argparse.Namespace, data: Arrays) -> tuple[float, list[float]]:
    """The budget: the ``--budget-quantile`` of the p50s of ``--calibration`` random,
    untrained candidates, measured as the search measures (its bench settings)."""
    space = search_space(data).with_classes(int(data.y.max()) + 1)
    rng = random.Random(CALIBRATION_SEED)
    board = Board(args.target, bench=bench_settings({"min_time_s": args.min_time}))
    latencies = []
    try:
        for i in range(args.calibration):
            candidate = space.suggest(lambda _name, choices: choices[rng.randrange(len(choices))])
            model = to_onnx(build(candidate))
            latencies.append(latency_of(board.measure(model, name=f"calibration {i}"), "p50"))
    finally:
        board.close()
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    k = round(100 * args.budget_quantile)
    budget = min(latencies) if k <= 0 else max(latencies) if k >= 100 else cuts[k - 1]
    return budget, latencies


@dataclass
class Run:
    """One strategy's search of one seed: its measured trials, in order, and its counts."""

    measured: list[TrialRecord]
    device_measurements: int
    timed_rounds: int  #: the timed loops of those measurements (more where one straddles)
    counts: dict[str, int]


def search(
    strategy: str, seed: int, args: argparse.Namespace, data: Arrays, out: Path, turns: Turns
) -> Run:
    run_dir = out / f"{strategy}-{seed}"
    searcher = Searcher(
        search_space(data),
        target=args.target,
        strategy=strategy,
        budgets=Budgets(latency_ms=args.latency_budget_ms),
        trials=args.trials,
        train=TrainSettings(epochs=args.epochs, final_epochs=0, seed=seed, threads=1),
        out=run_dir,
        progress=False,
        predictor=False,
        bench={"min_time_s": args.min_time},
    )

    def next_turn(_rec: TrialRecord, _result: object) -> None:
        turns.pass_on(strategy)
        turns.wait(strategy)

    searcher.on_trial = next_turn
    turns.wait(strategy)
    try:
        with contextlib.suppress(InfeasibleBudgetError):
            searcher.search(data.x, data.y)
    finally:
        turns.pass_on(strategy, finished=True)
    assert searcher.result is not None
    if (run_dir / "latency_table.json").exists():
        raise SystemExit(f"{run_dir} holds a latency table: its fills would go uncounted")
    with (run_dir / "measurements.jsonl").open() as log:
        lines = [json.loads(line) for line in log if line.strip()]
    rounds = sum(len(line.get("rounds") or [None]) for line in lines)
    trials = searcher.result.trials
    measured = [r for r in trials if r.outcome == MEASURED]
    return Run(measured, len(lines), rounds, searcher.result.counts)


def noise(a: list[TrialRecord], b: list[TrialRecord]) -> list[float]:
    """|lat_a / lat_b - 1| (the larger over the smaller) of each candidate in both runs."""
    lat_b = {r.hash: r.latency_ms for r in b if r.latency_ms}
    out = []
    for r in a:
        other = lat_b.get(r.hash)
        if r.latency_ms and other:
            out.append(max(r.latency_ms, other) / min(r.latency_ms, other) - 1.0)
    return out


@dataclass(frozen=True)
class Row:
    """One run's comparison at M measurements each."""

    seed: int
    m: int
    hv: dict[str, float]
    best: dict[str, float | None]
    seconds: float

    @property
    def ratio(self) -> float:
        r, e = self.hv["random"], self.hv["evolution"]
        return e / r if r > 0 else (float("inf") if e > 0 else 0.0)

    @property
    def gain_points(self) -> float | None:
        r, e = self.best["random"], self.best["evolution"]
        if e is None:
            return None
        return 100 * (e - (r or 0.0))


def compare(seed: int, args: argparse.Namespace, data: Arrays, out: Path) -> Row | None:
    start = time.perf_counter()
    turns = Turns(list(STRATEGIES))
    with ThreadPoolExecutor(max_workers=len(STRATEGIES)) as pool:
        futures = {s: pool.submit(search, s, seed, args, data, out, turns) for s in STRATEGIES}
        runs = {s: f.result() for s, f in futures.items()}
    budget = args.latency_budget_ms
    for name, run in runs.items():
        c = run.counts
        feasible = sum(1 for r in run.measured if r.feasible)
        print(
            f"  {name:9s} seed {seed}: {run.device_measurements} device measurements "
            f"({run.timed_rounds} timed rounds; 0 table fills), {c['duplicates']} repeated, "
            f"{c['failed']} failed; "
            f"{feasible} within budget, {c['infeasible']} over",
            flush=True,
        )
    m = min(len(run.measured) for run in runs.values())
    if m == 0:
        print(f"run {seed}: a strategy measured nothing", flush=True)
        return None
    cut = {s: run.measured[:m] for s, run in runs.items()}
    same = noise(cut["random"], cut["evolution"])
    if same:
        print(
            f"  measured by both: {len(same)} candidates; their two latencies differ by a "
            f"median {100 * statistics.median(same):.0f}%, at most {100 * max(same):.0f}%",
            flush=True,
        )
    row = Row(
        seed,
        m,
        {
            s: hypervolume([(r.accuracy or 0.0, r.latency_ms or 0.0) for r in v], budget)
            for s, v in cut.items()
        },
        {s: best_accuracy(v, budget) for s, v in cut.items()},
        time.perf_counter() - start,
    )
    print(f"run {seed}: {shown(row)}", flush=True)
    return row


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def shown(row: Row) -> str:
    gain = row.gain_points
    return (
        f"M={row.m}; HV random {row.hv['random']:.5f}, evolution {row.hv['evolution']:.5f}, "
        f"ratio {row.ratio:.2f}; best within budget random {percent(row.best['random'])}, "
        f"evolution {percent(row.best['evolution'])} "
        f"({'-' if gain is None else f'{gain:+.1f}'} points) ({row.seconds:.0f} s)"
    )


def said(met: bool) -> str:
    return "met" if met else "NOT met"


def report(rows: list[Row], runs: int) -> None:
    print(
        f"\n{'run':>3s} {'M':>3s} {'HV random':>10s} {'HV evol.':>10s} {'ratio':>6s} "
        f"{'best random':>12s} {'best evol.':>11s} {'points':>7s} {'s':>5s}"
    )
    for row in rows:
        gain = row.gain_points
        print(
            f"{row.seed:3d} {row.m:3d} {row.hv['random']:10.5f} {row.hv['evolution']:10.5f} "
            f"{row.ratio:6.2f} {percent(row.best['random']):>12s} "
            f"{percent(row.best['evolution']):>11s} "
            f"{'-' if gain is None else f'{gain:+.1f}':>7s} {row.seconds:5.0f}"
        )
    ahead = sum(1 for row in rows if row.ratio >= HV_TARGET)
    gains = [row.gain_points for row in rows]
    known = [g for g in gains if g is not None]
    mean_gain = statistics.mean(known) if len(known) == len(rows) and rows else None
    print(
        f"target: evolution/random HV >= {HV_TARGET} in >= {HV_RUNS_NEEDED} of {runs} runs: "
        f"{ahead} of {runs} (ratios {', '.join(f'{r.ratio:.2f}' for r in rows)}; median "
        f"{statistics.median(r.ratio for r in rows) if rows else float('nan'):.2f}): "
        f"{said(len(rows) == runs and ahead >= HV_RUNS_NEEDED)}"
    )
    better = sum(1 for g in known if g >= ACC_POINTS)
    print(
        f"target: best accuracy within budget >= random's + {ACC_POINTS:.0f} point at equal "
        f"measurements: mean "
        f"{'-' if mean_gain is None else f'{mean_gain:+.2f}'} points, >= +{ACC_POINTS:.0f} in "
        f"{better} of {runs} runs: {said(mean_gain is not None and mean_gain >= ACC_POINTS)}"
    )


def evolution_part(args: argparse.Namespace) -> None:
    data = vs_reference.images(argparse.Namespace(data=None, size=32, seed=0))
    print(
        f"stage space (benchmarks/vs_reference.py) on digits {data.input_shape}: "
        f"{len(data.x)} samples; {args.trials} trials per strategy, {args.epochs} epoch(s) "
        f"(proxy, 1 thread, no retraining), min_time {args.min_time} s per measurement; "
        f"no predictor for either strategy; target {args.target}",
        flush=True,
    )
    if args.latency_budget_ms is None:
        args.latency_budget_ms, latencies = calibrate(args, data)
        print(
            f"budget: {args.latency_budget_ms:.4f} ms p50, the {args.budget_quantile:.2f} "
            f"quantile of {len(latencies)} random untrained candidates measured "
            f"(min {min(latencies):.4f}, median {statistics.median(latencies):.4f}, max "
            f"{max(latencies):.4f} ms; {sum(x > args.latency_budget_ms for x in latencies)} "
            f"over it); hypervolume reference point (accuracy 0, {args.latency_budget_ms:.4f} "
            f"ms)",
            flush=True,
        )
    else:
        print(f"budget: {args.latency_budget_ms:.4f} ms p50 (given)", flush=True)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="search-quality-") as tmp_dir:
        out = Path(args.keep or tmp_dir)
        for seed in args.seeds:
            row = compare(seed, args, data, out)
            if row is not None:
                rows.append(row)
        if args.keep:
            table = [{**row.__dict__, "ratio": row.ratio} for row in rows]
            (out / "search_quality.json").write_text(json.dumps(table, indent=2) + "\n")
    report(rows, len(args.seeds))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=None, help="seeds 0..N-1 (default: --seeds)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--epochs", type=int, default=1, help="proxy epochs per candidate")
    p.add_argument(
        "--latency-budget-ms",
        "--budget-ms",  # its earlier name
        type=float,
        default=None,
        metavar="X",
        help="the p50 latency budget (default: --budget-quantile of measured random ones)",
    )
    p.add_argument("--budget-quantile", type=float, default=0.5)
    p.add_argument("--calibration", type=int, default=24, help="candidates the budget is from")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds timed per measurement loop")
    p.add_argument("--target", default="local")
    p.add_argument("--keep", type=Path, help="keep the run directories here")
    p.add_argument("--part", choices=["all", "evolution", "differentiable"], default="all")
    p.add_argument("--differentiable-epochs", type=int, default=3)
    differentiable_quality.add_arguments(p)
    args = p.parse_args(argv)
    if args.runs is not None:
        args.seeds = list(range(args.runs))
    if not 0 <= args.budget_quantile <= 1:
        p.error("--budget-quantile is in [0, 1]")
    if args.part in ("all", "evolution"):
        evolution_part(args)
    if args.part in ("all", "differentiable"):
        other = copy.copy(args)
        other.seed, other.epochs = args.seeds[0], args.differentiable_epochs
        differentiable_quality.run(other)
    return 0


if __name__ == "__main__":
    sys.exit(main())
