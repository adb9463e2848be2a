"""Energy in a search, on the simulated INA226: does every measured candidate get a figure,
how good is the energy predictor, and what does energy cost in measuring time.

    python benchmarks/energy.py [--candidates 20] [--seed 0] [--update-ms 5,50,100,200]
                                [--predictor-update-ms 5]

For each meter update interval (the INA226's conversion period, ``update_interval`` in ms)
a fresh simulated meter (hwnas_bench.testing.SimulatedIna226: 2 W idle + 3 W per busy core
of the agent) is laid out and read by the real local agent through ``power_root``. The same
N random candidates of the CLI's default space are measured as the search measures them
(``Board.measure``), each twice in turn: by a latency-only board (today's windows:
SEARCH_BENCH's 0.25 s in 3 rounds) and by a board told energy is wanted
(``Board(energy=True)``: windows sized to the meter, fewer and longer rounds where it needs
them). Printed per interval, side by side: the share of measurements with an energy figure
(target 100% with energy wanted), the wall time of one measurement (lease + warmup + timed
loops), the ratio energy / latency-only (target <= 1.5x), the energy board's window and
rounds, and how often the two boards' p50 (and, where both have one, energy) agree within
±10%: with the same plan that is the host's own repeatability, the ceiling of any
predictor; with fewer, longer rounds it also says what dropping the median of three costs.

Then, on the ``--predictor-update-ms`` meter: a fresh lookup table with energy (a temporary
cache: every op measured), and each candidate predicted before its measurement with the fit
of the candidates measured before it (out of sample, as the search logs it): the energy
predictor's share within ±10% (target >= 90%), beside latency's. Each target missed is said.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from predictor import draw  # the predictor benchmark's candidates (benchmarks/ is on the path)

from hwnas_bench import Measurement, TargetSpec
from hwnas_bench.testing import SimulatedIna226
from search.build import build
from search.measure import SEARCH_BENCH, Board, latency_of
from search.onnx_export import to_onnx
from search.predict import LatencyTable, Predictor, candidate_ops
from search.space import Candidate

SHARE_TARGET = 1.0
WITHIN_TARGET = 0.90
COST_TARGET = 1.5
STAT = "p50"


def metered(root: Path) -> TargetSpec:
    return TargetSpec("metered", "local", {"power_root": str(root)}, profile="local")


def timed(board: Board, model: bytes) -> tuple[Measurement, float]:
    start = time.monotonic()
    m = board.measure(model)
    return m, time.monotonic() - start


def agreement(first: list[float | None], second: list[float | None]) -> float | None:
    """The share of pairs (both figures there) within ±10% of each other; None: no pair."""
    pairs = [(a, b) for a, b in zip(first, second, strict=True) if a and b]
    if not pairs:
        return None
    return float(np.mean([abs(b / a - 1) <= 0.10 for a, b in pairs]))


@dataclass(frozen=True)
class CostRow:
    """One meter's row: energy shares, wall times, the ratio, the energy board's plan."""

    update_ms: int
    share_plain: float
    share_energy: float
    wall_plain_s: float
    wall_energy_s: float
    ratio: float  #: energy / latency-only, summed wall time
    window_s: float
    rounds: str
    latency_agree: float  #: p50 of the two boards within ±10%
    energy_agree: float | None  #: their mJ within ±10% (where both had a figure)

    def line(self) -> str:
        energy = f"{100 * self.energy_agree:>4.0f}%" if self.energy_agree is not None else "   -"
        return (
            f"{self.update_ms:>5}ms | {100 * self.share_plain:>9.0f}% / "
            f"{100 * self.share_energy:>8.0f}% | "
            f"{self.wall_plain_s:>11.3f} s / {self.wall_energy_s:>7.3f} s | "
            f"{self.ratio:>13.2f}x | {self.window_s:>6.3f}s | {self.rounds:>6} | "
            f"{100 * self.latency_agree:>4.0f}% / {energy}"
        )


def cost_row(update_ms: int, models: list[bytes], work: Path) -> CostRow:
    """Every model measured by a latency-only board and by an energy board, in turn."""
    root = work / f"root-{update_ms}ms"
    with SimulatedIna226(root, update_interval_ms=update_ms) as meter:
        plain = Board(metered(root), bench=SEARCH_BENCH)
        energy = Board(metered(root), bench=SEARCH_BENCH, energy=True)
        try:
            plain.connect()
            energy.connect()
            meter.wait_for_agent()
            timed(plain, models[0])  # first lease: the agent's session cache warms up
            timed(energy, models[0])
            per_round = replace(SEARCH_BENCH, min_time_s=SEARCH_BENCH.min_time_s / energy.rounds)
            t_plain, t_energy, got_plain, got_energy = [], [], 0, 0
            lat_plain: list[float] = []
            lat_energy: list[float] = []
            mj_plain: list[float | None] = []
            mj_energy: list[float | None] = []
            windows: list[float] = []
            rounds: set[int] = set()
            for i, model in enumerate(models):
                order = (plain, energy) if i % 2 == 0 else (energy, plain)
                for board in order:
                    m, wall = timed(board, model)
                    if board is plain:
                        t_plain.append(wall)
                        lat_plain.append(latency_of(m, STAT))
                        mj_plain.append(m.power.energy_mj)
                        got_plain += m.power.energy_mj is not None
                    else:
                        t_energy.append(wall)
                        lat_energy.append(latency_of(m, STAT))
                        mj_energy.append(m.power.energy_mj)
                        got_energy += m.power.energy_mj is not None
                        windows.append(m.window_s or 0.0)
                        rounds.add(energy.rounds_for(per_round)[1])
        finally:
            plain.close()
            energy.close()
    n = len(models)
    return CostRow(
        update_ms=update_ms,
        share_plain=got_plain / n,
        share_energy=got_energy / n,
        wall_plain_s=statistics.median(t_plain),
        wall_energy_s=statistics.median(t_energy),
        ratio=sum(t_energy) / sum(t_plain),
        window_s=statistics.median(windows),
        rounds=",".join(str(r) for r in sorted(rounds)),
        latency_agree=float(
            np.mean(np.abs(np.asarray(lat_energy) / np.asarray(lat_plain) - 1) <= 0.10)
        ),
        energy_agree=agreement(mj_plain, mj_energy),
    )


def predictor_rows(update_ms: int, candidates: list[Candidate], work: Path) -> list[str]:
    root = work / f"root-predictor-{update_ms}ms"
    with SimulatedIna226(root, update_interval_ms=update_ms) as meter:
        board = Board(metered(root), bench=SEARCH_BENCH, energy=True)
        try:
            board.connect()
            meter.wait_for_agent()
            table = LatencyTable.for_board(board, STAT, work, cache_dir=work / "cache")
            ops = [op for c in candidates for op in candidate_ops(c)]
            start = time.monotonic()
            table.ensure(ops, board)
            table_s = time.monotonic() - start
            predictor = Predictor(table)
            for c in candidates:
                prediction = predictor.predict(c)
                m = board.measure(to_onnx(build(c, seed=0)))
                predictor.observe(prediction, c, latency_of(m, STAT), m.power.energy_mj)
        finally:
            board.close()
    latency, energy = predictor.error(), predictor.energy_error()
    lines = [
        f"predictor on the {update_ms} ms meter: table of {len(table.entries)} ops "
        f"({table.benches} one-layer benchmarks, {table_s:.1f} s), energy in the table: "
        f"{'yes' if table.has_energy else 'NO'}",
        f"  latency: {latency.describe() if latency else '-'}",
        f"  energy:  {energy.describe() if energy else 'no energy pair (no prediction or figure)'}",
        f"  energy correction now: {predictor.describe()}",
    ]
    share = energy.within_10 if energy is not None else 0.0
    verdict = "met" if share >= WITHIN_TARGET else "MISSED"
    lines.append(
        f"  target: energy within ±10% >= {100 * WITHIN_TARGET:.0f}%: {verdict} "
        f"({100 * share:.0f}%)"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update-ms", default="5,50,100,200")
    parser.add_argument("--predictor-update-ms", type=int, default=5)
    parser.add_argument("--no-predictor", action="store_true")
    args = parser.parse_args(argv)
    candidates = draw(args.candidates, args.seed)
    models = [to_onnx(build(c, seed=0)) for c in candidates]
    intervals = [int(v) for v in args.update_ms.split(",") if v.strip()]
    print(
        f"{len(candidates)} candidates of the CLI's default space, measured as the search "
        f"measures them (SEARCH_BENCH: {SEARCH_BENCH.min_time_s} s timed in all), on the "
        "simulated INA226 (2 W idle + 3 W per busy core)"
    )
    missed = []
    with tempfile.TemporaryDirectory(prefix="hwnas-energy-") as tmp:
        work = Path(tmp)
        header = (
            f"{'update':>7} | {'with energy':>22} | {'wall per candidate':>25} | "
            f"{'energy/latency':>14} | {'window':>7} | rounds | p50 / mJ within ±10%"
        )
        print(header)
        print(
            f"{'':>7} | {'latency-only / energy':>22} | {'latency-only / energy':>25} | "
            f"{'(wall time)':>14} | {'':>7} | {'':>6} | of latency-only's"
        )
        for update_ms in intervals:
            row = cost_row(update_ms, models, work)
            print(row.line(), flush=True)
            if row.share_energy < SHARE_TARGET:
                missed.append(f"{update_ms} ms meter: energy on {row.share_energy:.0%} only")
            if row.ratio > COST_TARGET:
                missed.append(
                    f"{update_ms} ms meter: energy costs {row.ratio:.2f}x "
                    f"latency-only (target <= {COST_TARGET}x)"
                )
        if not args.no_predictor:
            lines = predictor_rows(args.predictor_update_ms, candidates, work)
            print("\n".join(lines))
            missed += [line.strip() for line in lines if "MISSED" in line]
    print(
        "targets: energy on every measurement with energy wanted, energy predictor >= 90% "
        f"within ±10%, energy <= {COST_TARGET}x latency-only time per candidate"
    )
    print("missed: " + ("; ".join(missed) if missed else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
