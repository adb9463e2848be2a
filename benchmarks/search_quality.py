"""Does evolution beat random search, and does one differentiable search land in its budget?

    python benchmarks/search_quality.py [--part all|evolution|differentiable]
                                        [--seeds 0 1 2] [--trials 40] [--epochs 3]
                                        [--latency-budget-ms 0.02] [--min-time 0.3]
                                        [--target local]
                                        [--space conv|bench|default|large]
                                        [--at 0.25 0.5 0.75] [--rounds 5]

``--part differentiable`` is benchmarks/differentiable_quality.py (three budgets, one
differentiable search each, against random at the same number of device measurements;
its docstring says how), run with this script's --epochs, --target and first seed. The
rest of this text is the evolution part.

The default space (``conv``) is the benchmark's own: 2-6 conv / depthwise-separable / pool
layers, kernels 1/3/5, strides 1/2, 4-64 channels, no fully-connected layer and no skip, so
there is no cheap linear model that is already accurate on digits (in the spaces with
``fc`` and ``skip`` random search finds one within 40 draws and reaches ~90% of the
attainable hypervolume), and the default budget binds (most candidates measure over it).
The two searches of a seed run in lock-step, one trial each in turn, so load that comes
and goes on the host falls on both alike.
For each seed, one ``random`` and one ``evolution`` search on ``digits`` (same space, same
training, same board). Each front is cut to the first M device measurements, M the smaller
of the two runs' counts, so both strategies get the same number of measurements. Prints
per seed and as the mean over seeds: the hypervolume of (validation accuracy, measured
latency) with the reference point (accuracy 0, the latency budget), evolution / random
(target >= 1.2), how much of the attainable hypervolume random alone reaches (the union of
every candidate both runs measured: an upper bound on the ratio any strategy could show
here), the latency noise (candidates both runs measured: their first generation is the
same seeded draw), and the candidate -> ONNX export time per candidate.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import differentiable_quality  # benchmarks/ is on the path when run as a script

from search import Budgets, InfeasibleBudgetError, Searcher, SearchSpace
from search.cli.search import DEFAULT_SPACE
from search.records import MEASURED, TrialRecord
from search.training.data import load_dataset

#: the CLI's default space (search/cli/search.py), and a larger one where random sampling lands
#: on slow or poor candidates more often
SPACES: dict[str, dict[str, object]] = {}
SPACES["default"] = dict(DEFAULT_SPACE)
#: the benchmark's own space (the default): large enough that random search does not cover
#: it in 40 trials, with a budget that rules out most of the big candidates
SPACES["bench"] = {
    "num_layers": (1, 6),
    "layer_types": ["conv", "dwconv", "pool", "fc", "skip"],
    "conv_kernels": [1, 3, 5],
    "conv_strides": [1, 2],
    "conv_channels": [4, 8, 16, 32, 64],
    "pool_sizes": [2],
    "pool_strides": [2],
    "fc_sizes": [32, 64, 128, 256],
}
#: convolutions only (no fully-connected layers, no skip), 2-6 of them: no cheap linear
#: model that is accurate on digits, so accuracy has to be bought with latency
SPACES["conv"] = {
    "num_layers": (2, 6),
    "layer_types": ["conv", "dwconv", "pool"],
    "conv_kernels": [1, 3, 5],
    "conv_strides": [1, 2],
    "conv_channels": [4, 8, 16, 32, 64],
    "pool_sizes": [2],
    "pool_strides": [2],
    "fc_sizes": [32],
}
SPACES["large"] = {
    **SPACES["default"],
    "num_layers": (1, 6),
    "conv_kernels": [1, 3, 5, 7],
    "conv_channels": [4, 8, 16, 32, 64],
    "fc_sizes": [16, 32, 64, 128, 256],
}


def hypervolume(points: list[tuple[float, float]], budget: float) -> float:
    """Area dominated by (accuracy up, latency down) points, from (0, budget)."""
    front: list[tuple[float, float]] = []
    for acc, lat in sorted(p for p in points if p[1] <= budget):
        front = [f for f in front if not (f[0] <= acc and f[1] >= lat)]
        if not any(f[0] >= acc and f[1] <= lat for f in front):
            front.append((acc, lat))
    area, prev_acc = 0.0, 0.0
    for acc, lat in sorted(front, key=lambda p: p[0]):
        area += (acc - prev_acc) * (budget - lat)
        prev_acc = acc
    return area


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


def run(
    strategy: str, seed: int, args: argparse.Namespace, out: Path, turns: Turns
) -> list[TrialRecord]:
    data = load_dataset("digits")
    searcher = Searcher(
        SearchSpace(input_shape=data.input_shape, **SPACES[args.space]),  # type: ignore[arg-type]
        target=args.target,
        strategy=strategy,
        budgets=Budgets(latency_ms=args.latency_budget_ms),
        trials=args.trials,
        epochs=args.epochs,
        batch_size=32,
        seed=seed,
        out=out / f"{strategy}-{seed}",
        progress=False,
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
    c = searcher.result.counts
    print(
        f"  {strategy} seed {seed}: {c['measured']} measured, {c['duplicates']} repeated, "
        f"{c['pruned']} pruned, {c['failed']} failed, {c['infeasible']} over budget",
        flush=True,
    )
    return [r for r in searcher.result.trials if r.outcome == MEASURED]


def noise(a: list[TrialRecord], b: list[TrialRecord]) -> list[float]:
    """|lat_a / lat_b - 1| (the larger over the smaller) of each candidate in both runs."""
    lat_b = {r.hash: r.latency_ms for r in b if r.latency_ms}
    out = []
    for r in a:
        other = lat_b.get(r.hash)
        if r.latency_ms and other:
            out.append(max(r.latency_ms, other) / min(r.latency_ms, other) - 1.0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument(
        "--latency-budget-ms",
        "--budget-ms",  # its earlier name
        type=float,
        default=0.02,
        metavar="X",
        help="the p50 latency budget, as hwnas search's flag (default: 0.02)",
    )
    p.add_argument(
        "--min-time", type=float, default=0.3, help="seconds timed per measurement (median)"
    )
    p.add_argument("--target", default="local")
    p.add_argument("--space", choices=sorted(SPACES), default="conv")
    p.add_argument("--keep", type=Path, help="keep the run directories here")
    p.add_argument("--part", choices=["all", "evolution", "differentiable"], default="all")
    differentiable_quality.add_arguments(p)
    args = p.parse_args(argv)
    if args.part in ("all", "evolution"):
        evolution_part(args)
    if args.part in ("all", "differentiable"):
        args.seed = args.seeds[0]
        differentiable_quality.run(args)
    return 0


def evolution_part(args: argparse.Namespace) -> None:
    ratios: list[float] = []
    totals = {"random": 0.0, "evolution": 0.0}  #: summed hypervolumes over the seeds
    shares: list[float] = []  #: random's hypervolume / that of all candidates measured
    exports: list[float] = []
    with tempfile.TemporaryDirectory(prefix="search-quality-") as tmp_dir:
        tmp = str(args.keep or tmp_dir)
        for seed in args.seeds:
            start = time.perf_counter()
            names = ["random", "evolution"]
            turns = Turns(names)
            with ThreadPoolExecutor(max_workers=2) as pool:
                futures = {s: pool.submit(run, s, seed, args, Path(tmp), turns) for s in names}
                measured = {s: f.result() for s, f in futures.items()}
            m = min(len(v) for v in measured.values())
            if m == 0:
                print(f"seed {seed}: a run measured nothing; left out of the mean", flush=True)
                continue
            hv = {
                s: hypervolume(
                    [(r.accuracy or 0.0, r.latency_ms or 0.0) for r in v[:m]],
                    args.latency_budget_ms,
                )
                for s, v in measured.items()
            }
            ratio = hv["evolution"] / hv["random"] if hv["random"] > 0 else float("inf")
            for name in totals:
                totals[name] += hv[name]
            ratios.append(ratio)
            # headroom: the hypervolume of every candidate either run measured, all together
            union = hypervolume(
                [(r.accuracy or 0.0, r.latency_ms or 0.0) for v in measured.values() for r in v],
                args.latency_budget_ms,
            )
            shares.append(hv["random"] / union if union > 0 else 0.0)
            exports += [r.export_s for v in measured.values() for r in v if r.export_s]
            # the noise floor: a candidate both runs measured (their first generation is the
            # same draw) measured twice, a trial apart
            same = noise(measured["random"], measured["evolution"])
            if same:
                print(
                    f"  measured by both runs: {len(same)} candidates; their two latencies "
                    f"differ by a median {100 * statistics.median(same):.0f}%, "
                    f"at most {100 * max(same):.0f}%",
                    flush=True,
                )
            print(
                f"seed {seed}: {m} measurements each; hypervolume random {hv['random']:.5f}, "
                f"evolution {hv['evolution']:.5f}, ratio {ratio:.2f}; random reaches "
                f"{100 * shares[-1]:.0f}% of the hypervolume of both runs' candidates together "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    if ratios:
        print(
            f"evolution / random hypervolume, mean over {len(ratios)} seeds: "
            f"{statistics.mean(ratios):.2f} (target >= 1.2; ratio of the summed hypervolumes "
            f"{totals['evolution'] / totals['random'] if totals['random'] else float('inf'):.2f}"
            f"); random alone reaches "
            f"{100 * statistics.mean(shares):.0f}% of the hypervolume of everything measured, "
            f"so no strategy can beat it by more than {1 / statistics.mean(shares):.2f}x here"
        )
    if exports:
        print(
            f"export time per candidate (direct ONNX build): median "
            f"{1000 * statistics.median(exports):.2f} ms, max {1000 * max(exports):.2f} ms "
            f"over {len(exports)} candidates"
        )


if __name__ == "__main__":
    sys.exit(main())
