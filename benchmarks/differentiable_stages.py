"""The differentiable search on the stage space against evolution (issue 20, item 4).

    python benchmarks/differentiable_quality.py --space stages [--at 0.25 0.5 0.75]
        [--rounds 5] [--evolution-trials 40] [--stage-epochs 1] [--final-epochs N]
        [--seed 0] [--target local]

Data: scikit-learn's digits (its seeded 80/20 split) resized to 32x32x3, as
benchmarks/vs_reference.py does. Space (:func:`stage_space`): MCUNet-like, every stage
``mbconv`` (the kinds with a supernet form: the ``res`` stage of vs_reference.py has none):
a stride-2 stem, three inverted-residual stages with kernels 3/5, expansions 3/6 and (the
middle one) squeeze-excite, width multipliers 0.5/0.75/1, input resolutions 16/24/32.

Budgets: the space's smallest and largest architectures (every gene at its least, and at
its most) are exported untrained and measured as the search measures (p50); the budgets lie
``--at`` of the way from one to the other, geometrically.

Per budget: one ``differentiable`` search (at most ``--rounds`` rounds) and one
``evolution`` search of ``--evolution-trials`` trials (no predictor, so no table), both at
``--stage-epochs`` of the search's recipe and the same seed; each winner is retrained
(``--final-epochs``, default 3x) and measured again, as every search does. Printed per
budget and strategy: the best's measured latency as a share of the budget (target for
differentiable: within 80-100%), the retrained winner's test accuracy (target:
differentiable within 1 point of evolution), and the device measurements: whole models
(the lines of measurements.jsonl, plus the retrained winner's one) and, for differentiable,
the latency table's one-block models (entries measured, and the bench runs they took:
``ROUNDS`` interleaved with the overhead model each; the table starts empty in a temporary
cache, so the first budget pays for it). Target: differentiable's device measurements at
most 1/5 of evolution's, counted both as models (entries) and as bench runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from search import InfeasibleBudgetError, Searcher, SearchSpace
from search.blocks import BlockCandidate, StageSpace, edge_space
from search.blocks.stage_genes import GeneSuggest, stage_genes
from search.build import build
from search.measure import SEARCH_BENCH, Board, latency_of
from search.onnx_export import to_onnx
from search.records import MEASURED
from search.training.data import Arrays, load_dataset
from search.training.settings import TrainSettings

BAND = (0.8, 1.0)
SIZE = 32


def stage_space() -> StageSpace:
    """vs_reference.py's space with an inverted-residual third stage (``edge_space``)."""
    return edge_space(last="mbconv")


def images() -> Arrays:
    digits = load_dataset("digits")
    assert digits.x_test is not None
    assert digits.y_test is not None

    def resized(x: np.ndarray) -> np.ndarray:
        nchw = torch.from_numpy(x).permute(0, 3, 1, 2)
        out = torch.nn.functional.interpolate(nchw, size=(SIZE, SIZE), mode="bilinear")
        return out.permute(0, 2, 3, 1).repeat(1, 1, 1, 3).numpy()

    return Arrays(resized(digits.x), digits.y, resized(digits.x_test), digits.y_test, "digits")


def extreme(space: SearchSpace, pick: Any) -> BlockCandidate:
    """The candidate with every gene at ``pick`` (min or max) of its choices."""
    assert space.stage_space is not None
    genes = {name: pick(values) for name, values in stage_genes(space.stage_space).items()}
    sampled = space.stage_space.sample(GeneSuggest(genes, stage_genes(space.stage_space)))
    return BlockCandidate.of(
        space.input_shape, sampled.blocks, int(space.num_classes or 0), sampled.resolution
    )


def measured_ms(target: str, candidates: list[BlockCandidate]) -> list[float]:
    board = Board(target, bench=SEARCH_BENCH, purpose="benchmark extremes")
    try:
        board.connect()
        return [latency_of(board.measure(to_onnx(build(c))), "p50") for c in candidates]
    finally:
        board.close()


@dataclass
class Outcome:
    strategy: str
    share: float | None  #: the search's best, measured, / budget
    final_share: float | None  #: the retrained winner's own measurement / budget
    test_accuracy: float | None
    models: int  #: whole-model device measurements (the retrained winner's included)
    table_entries: int  #: one-block models the table measured
    table_runs: int  #: their bench runs (ROUNDS each, interleaved with the overhead)
    rounds: list[float]  #: each measured trial's latency / budget (differentiable)
    wall_s: float
    encoding: str

    @property
    def inside(self) -> bool:
        return self.share is not None and BAND[0] <= self.share <= BAND[1]


def search(
    strategy: str,
    space: SearchSpace,
    data: Arrays,
    budget: float,
    trials: int,
    args: argparse.Namespace,
    out: Path,
) -> Outcome:
    train = TrainSettings(
        epochs=args.stage_epochs, final_epochs=args.final_epochs, seed=args.seed, threads=2
    )
    searcher = Searcher(
        space,
        target=args.target,
        strategy=strategy,
        train=train,
        constraints={"latency_ms": budget},
        trials=trials,
        out=out,
        progress=False,
        predictor=False if strategy == "evolution" else None,
    )
    start = time.perf_counter()
    best = None
    with contextlib.suppress(InfeasibleBudgetError):
        best = searcher.search(data.x, data.y, test_data=data.x_test, test_labels=data.y_test)
    wall = time.perf_counter() - start
    result = searcher.result
    assert result is not None
    log = out / "measurements.jsonl"
    models = sum(1 for _ in log.open()) if log.exists() else 0
    measured = [r for r in result.trials if r.outcome == MEASURED]
    entries = runs = 0
    if strategy == "differentiable":
        trace = json.loads((out / "lambda_trace.json").read_text())
        entries = int(trace["table_ops_measured"])
        if result.forecast is not None:
            runs = result.forecast.table.benches
    share = final_share = accuracy = None
    encoding = ""
    if best is not None:
        encoding = best.candidate.encode()
        share = (best.record.latency_ms or 0.0) / budget
        if best.final is not None:
            models += 1
            final_share = latency_of(best.final.measurement, "p50") / budget
        assert data.x_test is not None
        accuracy = best.evaluate(data.x_test, data.y_test)[1]
    return Outcome(
        strategy,
        share,
        final_share,
        accuracy,
        models,
        entries,
        runs,
        [(r.latency_ms or 0.0) / budget for r in measured],
        wall,
        encoding,
    )


def shown(outcome: Outcome) -> str:
    share = f"{outcome.share:.2f}" if outcome.share is not None else "none inside"
    final = f"{outcome.final_share:.2f}" if outcome.final_share is not None else "-"
    acc = f"{100 * outcome.test_accuracy:.1f}%" if outcome.test_accuracy is not None else "-"
    table = (
        f" + {outcome.table_entries} one-block models ({outcome.table_runs} bench runs)"
        if outcome.strategy == "differentiable"
        else ""
    )
    rounds = ", ".join(f"{r:.2f}" for r in outcome.rounds)
    return (
        f"  {outcome.strategy:>14}: best {share} x budget (retrained {final}), test accuracy "
        f"{acc} after retraining; device: {outcome.models} models{table}; trials measured "
        f"at [{rounds}] x budget; {outcome.wall_s:.0f} s\n                  {outcome.encoding}"
    )


def run(args: argparse.Namespace) -> int:
    data = images()
    classes = int(np.max(data.y)) + 1
    space = SearchSpace(input_shape=(SIZE, SIZE, 3), stages=stage_space(), num_classes=classes)
    with tempfile.TemporaryDirectory(prefix="differentiable-stages-") as tmp:
        os.environ["HWNAS_CACHE_DIR"] = str(Path(tmp) / "tables")  # the table starts empty
        small_c, large_c = extreme(space, min), extreme(space, max)
        small, large = measured_ms(args.target, [small_c, large_c])
        print(
            f"stage space, digits {SIZE}x{SIZE}x3 ({len(data.x)} train, "
            f"{len(data.x_test) if data.x_test is not None else 0} test): smallest "
            f"{small:.4f} ms, largest {large:.4f} ms (p50, measured, untrained); "
            f"{args.stage_epochs} epochs, final {args.final_epochs or 3 * args.stage_epochs}, "
            f"seed {args.seed}, at most {args.rounds} rounds vs evolution at "
            f"{args.evolution_trials} trials",
            flush=True,
        )
        landed = within = cheap = 0
        for k, at in enumerate(args.at):
            budget = small * (large / small) ** at
            print(f"budget {budget:.4f} ms ({at:.2f} of the way):", flush=True)
            dnas = search(
                "differentiable", space, data, budget, args.rounds, args, Path(tmp) / f"d{k}"
            )
            print(shown(dnas), flush=True)
            evo = search(
                "evolution", space, data, budget, args.evolution_trials, args, Path(tmp) / f"e{k}"
            )
            print(shown(evo), flush=True)
            landed += dnas.inside
            last_inside = bool(dnas.rounds) and BAND[0] <= dnas.rounds[-1] <= BAND[1]
            close = (
                dnas.test_accuracy is not None
                and evo.test_accuracy is not None
                and dnas.test_accuracy >= evo.test_accuracy - 0.01
            )
            within += close
            dnas_cost = dnas.models + dnas.table_entries
            few = dnas_cost * 5 <= evo.models
            cheap += few
            gap = (
                f"{100 * (dnas.test_accuracy - evo.test_accuracy):+.1f} points"
                if dnas.test_accuracy is not None and evo.test_accuracy is not None
                else "not comparable"
            )
            print(
                f"  -> landed {'inside' if dnas.inside else 'NOT inside'} 80-100% (its best; "
                f"its last round {'inside' if last_inside else 'NOT inside'}); accuracy "
                f"{gap} vs evolution ({'within' if close else 'NOT within'} 1 point); device "
                f"models {dnas_cost} vs {evo.models} ({'<=' if few else 'NOT <='} 1/5)",
                flush=True,
            )
        n = len(args.at)
        print(
            f"stage space: differentiable landed inside 80-100% in {landed} of {n} budgets "
            f"(target: all), within 1 point of evolution's accuracy in {within} of {n}, at "
            f"<= 1/5 of its device models in {cheap} of {n}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    import differentiable_quality

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    differentiable_quality.add_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", default="local")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
