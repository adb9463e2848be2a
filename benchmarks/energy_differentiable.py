"""Does one differentiable search land within 80-100% of both a latency and an energy budget?

    python benchmarks/energy_differentiable.py [--runs 5] [--rounds 6] [--target-dir DIR]

On a fresh simulated INA226 (hwnas_bench.testing.SimulatedIna226: a real hwmon tree the
agent reads through ``power_root``; 2 W idle + 3 W per busy core of the agent, 5 ms
conversions), per run: the smallest and the largest architecture of a small stage space
(two inverted-residual stages on 32x32x3, widths 8-24 and 16-48, kernels 3/5, expansions
3/6: 0.05-0.5 ms here, far above the host's noise floor) are measured with energy; the
budgets lie half-way between them (geometric mean, both bind); one differentiable search
(``--rounds`` derivations at most, 1 epoch of synthetic two-class data: accuracy is not the
point) runs with both budgets. Printed per run: each round's measured latency and energy
/ budget, whether a round landed inside 80-100% of both (as measured: its median round's
figures), and whether the loop's confidence rule also proved that round within the
latency budget (search/measure/confidence.py). Every run is printed; the summary says how
many landed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hwnas_bench.targets import TargetSpec
from hwnas_bench.testing import SimulatedIna226
from search import InfeasibleBudgetError, Searcher, SearchSpace
from search.blocks import BlockCandidate, StageSpace, StageSpec
from search.blocks.stage_genes import GeneSuggest, stage_genes
from search.build import build
from search.measure import SEARCH_BENCH, Board, latency_of
from search.onnx_export import to_onnx
from search.records import MEASURED
from search.training.settings import TrainSettings

BAND = (0.8, 1.0)
SPACE = SearchSpace(
    input_shape=(32, 32, 3),
    stages=StageSpace(
        stages=(
            StageSpec("mbconv", (1, 2), (8, 12, 16, 24), kernels=(3, 5), expansions=(3, 6)),
            StageSpec(
                "mbconv", (1, 2), (16, 24, 32, 48), stride=2, kernels=(3, 5), expansions=(3, 6)
            ),
        ),
    ),
    num_classes=2,
)


def extreme(pick: type[min] | type[max]) -> BlockCandidate:
    stages = SPACE.stage_space
    assert stages is not None
    genes = {name: pick(values) for name, values in stage_genes(stages).items()}
    sampled = stages.sample(GeneSuggest(genes, stage_genes(stages)))
    return BlockCandidate.of(SPACE.input_shape, sampled.blocks, 2, sampled.resolution)


def extremes(target: TargetSpec, meter: SimulatedIna226) -> list[tuple[float, float]]:
    """(p50 ms, mJ) of the smallest and the largest architecture, measured with energy."""
    board = Board(target, bench=SEARCH_BENCH, energy=True)
    try:
        board.connect()
        meter.wait_for_agent()
        out = []
        for c in (extreme(min), extreme(max)):
            m = board.measure(to_onnx(build(c)))
            if m.power.energy_mj is None:
                raise SystemExit(f"the simulated meter gave no energy: {m.power.reason}")
            out.append((latency_of(m, "p50"), m.power.energy_mj))
        return out
    finally:
        board.close()


def one_run(work: Path, rounds: int, seed: int) -> bool:
    with SimulatedIna226(work / "root") as meter:
        target = TargetSpec("metered", "local", {"power_root": str(meter.root)}, profile="local")
        (small_ms, small_mj), (large_ms, large_mj) = extremes(target, meter)
        latency_budget = (small_ms * large_ms) ** 0.5
        energy_budget = (small_mj * large_mj) ** 0.5
        rng = np.random.default_rng(seed)
        x = rng.random((96, 32, 32, 3), dtype=np.float32)
        y = (x[:, :16].mean(axis=(1, 2, 3)) > x[:, 16:].mean(axis=(1, 2, 3))).astype(int)
        searcher = Searcher(
            SPACE,
            target=target,
            strategy="differentiable",
            budgets={"latency_ms": latency_budget, "energy_mj": energy_budget},
            trials=rounds,
            train=TrainSettings(epochs=1, batch_size=32, final_epochs=0, seed=seed),
            out=work / "run",
            progress=False,
        )
        start = time.perf_counter()
        with contextlib.suppress(InfeasibleBudgetError):
            searcher.search(x, y)
        wall = time.perf_counter() - start
    assert searcher.result is not None
    print(
        f"  budgets {latency_budget:.4f} ms, {energy_budget:.4f} mJ "
        f"(extremes {small_ms:.4f}-{large_ms:.4f} ms, {small_mj:.4f}-{large_mj:.4f} mJ), "
        f"{wall:.0f} s"
    )
    landed = False
    for r in searcher.result.trials:
        if r.outcome != MEASURED or r.latency_ms is None or r.energy_mj is None:
            print(f"  trial {r.number}: {r.outcome} ({r.reason})")
            continue
        lat, en = r.latency_ms / latency_budget, r.energy_mj / energy_budget
        inside = BAND[0] <= lat <= BAND[1] and BAND[0] <= en <= BAND[1]
        landed = landed or inside
        verdict = r.latency_verdict.side if r.latency_verdict is not None else "-"
        print(
            f"  round {r.number}: latency {lat:.2f} x budget, energy {en:.2f} x budget"
            f"{'  <- inside both bands' if inside else ''} (latency verdict: {verdict}, "
            f"feasible: {r.feasible})"
        )
    trace = json.loads((work / "run" / "lambda_trace.json").read_text())
    print(f"  table: {trace.get('table_ops_measured')} one-block models measured")
    return landed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    landed = 0
    for run in range(args.runs):
        print(f"run {run}:")
        with tempfile.TemporaryDirectory() as work:
            landed += one_run(Path(work), args.rounds, seed=run)
    print(
        f"landed inside 80-100% of both budgets in {landed} of {args.runs} runs "
        f"(target: every search); {'met' if landed == args.runs else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
