"""The supernet's math, with a dict-backed fake table: E[latency] against brute force, the
argmax prediction against the table's sum, gradients to α, dual ascent, the temperature
schedule, the derivation's band and limits, genes round-trip."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch

from search.cost import Limits, cost
from search.errors import SettingsError
from search.predict.ops import OVERHEAD, LayerOp, candidate_ops
from search.records import FAILED, MEASURED, TrialRecord
from search.settings import Budgets, SearchSettings
from search.space import SearchSpace
from search.strategies.base import SearchContext
from search.strategies.differentiable.derive import derive
from search.strategies.differentiable.strategy import DerivedGenesSampler, DifferentiableStrategy
from search.strategies.differentiable.supernet import (
    SKIP,
    CostModel,
    Macro,
    Supernet,
    gumbel_softmax,
)
from search.strategies.differentiable.training import DualSettings, SupernetTrainer
from search.training.data import Split
from search.training.train import TrainSettings


def _macs(op: LayerOp) -> int:
    if op.kind in ("conv", "dwconv"):
        cin, h, w = op.in_shape
        hw = h * w  # a formula for the fake table, not a cost model
        if op.kind == "conv":
            return cin * op.width * op.kernel**2 * hw
        return cin * op.kernel**2 * hw + cin * op.width * hw
    return int(np.prod(op.in_shape)) * op.width


class FakeTable:
    """The LatencyTable methods the strategy uses, from a formula (ms ~ MACs) in a dict."""

    def __init__(self, overhead: float = 0.01, energy: bool = False) -> None:
        self.ms: dict[LayerOp, float] = {}
        self.overhead = overhead
        self.has_energy = energy
        self.ensured: list[LayerOp] = []

    def ensure(self, ops: Iterable[LayerOp], board: object) -> int:
        new = [op for op in ops if op not in self.ms and op != OVERHEAD]
        for op in new:
            self.ms[op] = 1e-3 + 1e-6 * _macs(op)
        self.ensured += list(ops)
        return len(new)

    def layer_ms(self, op: LayerOp) -> float:
        return self.ms[op]

    def overhead_ms(self) -> float:
        return self.overhead

    def sum_ms(self, ops: Iterable[LayerOp]) -> float:
        return self.overhead + sum(self.ms[op] for op in ops)

    def layer_energy_mj(self, op: LayerOp) -> float | None:
        return 2.0 * self.ms[op] if self.has_energy and op != OVERHEAD else None

    def overhead_energy_mj(self) -> float | None:
        return 2.0 * self.overhead if self.has_energy else None


def space(**kw: object) -> SearchSpace:
    args: dict[str, object] = {
        "input_shape": (8, 8, 1),
        "num_layers": (1, 3),
        "layer_types": ["conv"],
        "conv_kernels": [3, 5],
        "conv_channels": [4, 16, 32],
        "num_classes": 10,
    }
    args.update(kw)
    return SearchSpace(**args)  # type: ignore[arg-type]


def setup(sp: SearchSpace) -> tuple[Macro, FakeTable, CostModel]:
    macro = Macro(sp)
    table = FakeTable()
    table.ensure(macro.layer_ops(), None)
    return macro, table, CostModel(macro, table.layer_ms, table.overhead_ms())


def random_probs(macro: Macro, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(len(p.choices), generator=gen), 0) for p in macro.positions]


SPACES = {
    "conv, depth 1-3": {},
    "conv+dwconv+fc+skip": {
        "layer_types": ["conv", "dwconv", "fc", "skip"],
        "conv_kernels": [3],
        "conv_channels": [4, 8],
        "fc_sizes": [16, 32],
    },
    "strided, fixed depth": {"num_layers": 2, "conv_strides": [2], "conv_channels": [4, 8]},
}


@pytest.mark.parametrize("name", SPACES)
def test_expected_latency_is_the_brute_force_expectation(name: str) -> None:
    macro, table, latency = setup(space(**SPACES[name]))
    probs = random_probs(macro)
    brute = 0.0
    for picks in itertools.product(*(range(len(p.choices)) for p in macro.positions)):
        weight = math.prod(float(probs[i][j]) for i, j in enumerate(picks))
        brute += weight * table.sum_ms(candidate_ops(macro.candidate(picks)))
    assert float(latency.expectation(probs)) == pytest.approx(brute, rel=1e-5)


@pytest.mark.parametrize("name", SPACES)
def test_one_architecture_is_predicted_as_the_table_sums_it(name: str) -> None:
    macro, table, latency = setup(space(**SPACES[name]))
    rng = np.random.default_rng(1)
    for _ in range(20):
        picks = [int(rng.integers(len(p.choices))) for p in macro.positions]
        onehot = [torch.eye(len(p.choices))[j] for p, j in zip(macro.positions, picks, strict=True)]
        expected = table.sum_ms(candidate_ops(macro.candidate(picks)))
        assert latency.of(picks) == pytest.approx(expected, rel=1e-9)
        assert float(latency.expectation(onehot)) == pytest.approx(expected, rel=1e-5)


def test_macro_structure_follows_the_space() -> None:
    macro = Macro(space(**SPACES["conv+dwconv+fc+skip"], conv_strides=[2, 1]))
    roles = [p.role for p in macro.positions]
    assert roles == ["feature", "feature", "fc"]
    assert [c.label() for c in macro.positions[0].choices] == [
        "conv_k3_c4", "conv_k3_c8", "dw_k3_c4", "dw_k3_c8", "skip",
    ]  # fmt: skip
    assert macro.positions[2].skip_index == 2  # fc_u16, fc_u32, skip
    # no skip type: the first `lo` positions are mandatory; the strided position has none
    assert [p.skip_index for p in Macro(space()).positions] == [None, 6, 6]
    strided = Macro(space(num_layers=2, conv_strides=[2]))
    assert all(p.skip_index is None and p.stride == 2 for p in strided.positions)
    # every op an architecture runs is among layer_ops (what the table is asked for)
    ops = set(macro.layer_ops())
    for picks in itertools.product(*(range(len(p.choices)) for p in macro.positions)):
        assert set(candidate_ops(macro.candidate(picks))) <= ops


def test_spaces_it_cannot_search_are_refused() -> None:
    with pytest.raises(SettingsError, match="conv/dwconv"):
        Macro(space(layer_types=["pool", "fc"]))
    with pytest.raises(SettingsError, match="odd conv kernel"):
        Macro(space(conv_kernels=[2, 4]))


@pytest.mark.parametrize("name", SPACES)
def test_genes_round_trip_for_every_architecture(name: str) -> None:
    sp = space(**SPACES[name])
    macro = Macro(sp)
    for picks in itertools.product(*(range(len(p.choices)) for p in macro.positions)):
        candidate = macro.candidate(picks)
        genes = macro.genes(candidate)
        assert set(genes) == set(sp.genes)
        assert sp.decode(genes).encode() == candidate.encode()


def test_the_sampler_records_the_stashed_genes() -> None:
    sp = space()
    macro = Macro(sp)
    candidate = macro.candidate([5, 0, 6])  # conv_k5_c32, conv_k3_c4, skip
    sampler = DerivedGenesSampler()
    sampler.genes = macro.genes(candidate)
    study = optuna.create_study(sampler=sampler)
    trial = study.ask()
    values = {n: trial.suggest_categorical(n, list(c)) for n, c in sp.genes.items()}
    assert sp.decode(values).encode() == candidate.encode()
    assert values["depth"] == 2


def test_the_supernet_gives_logits_and_gradients_reach_alpha() -> None:
    for name in SPACES:
        macro, _, latency = setup(space(**SPACES[name]))
        net = Supernet(macro, seed=0)
        alpha = [torch.zeros(len(p.choices), requires_grad=True) for p in macro.positions]
        gen = torch.Generator().manual_seed(0)
        weights = [gumbel_softmax(a, 1.0, gen) for a in alpha]
        x = torch.rand(4, 1, 8, 8)
        logits = net(x, weights)
        assert logits.shape == (4, 10)
        probs = [torch.softmax(a, 0) for a in alpha]
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(4)) + latency.expectation(
            probs
        )
        loss.backward()
        for a in alpha:
            assert a.grad is not None
            assert float(a.grad.abs().sum()) > 0


def test_a_one_hot_supernet_is_the_architecture_masked() -> None:
    """One-hot weights on conv_k3_c4: the output channels past 4 are exactly zero, so the
    classifier sees a 4-channel network."""
    macro, _, _ = setup(space(num_layers=1))
    net = Supernet(macro, seed=0)
    onehot = [torch.eye(len(macro.positions[0].choices))[0]]
    feats: list[torch.Tensor] = []
    net.head_map.register_forward_hook(lambda m, i, o: feats.append(i[0]))
    with torch.no_grad():
        net(torch.rand(2, 1, 8, 8), onehot)
    per_channel = feats[0].reshape(2, macro.max_channels, 64).abs().sum(dim=(0, 2))
    assert float(per_channel[4:].sum()) == 0.0
    assert float(per_channel[:4].sum()) > 0.0


def test_the_supernet_learns_a_narrow_path() -> None:
    """Trained at one narrow architecture (4 channels of 32), the supernet learns digits:
    without normalisation its largest-width fan-in faded the signal and it stayed at chance."""
    from search.training.data import load_dataset, split, to_nchw

    sp = space(layer_types=["conv", "fc"], fc_sizes=[16])
    macro = Macro(sp)
    d = load_dataset("digits")
    data = split(to_nchw(d.x, sp.hwc), d.y, 0.2, 0)
    picks = [0, 0, 0]  # conv_k3_c4, conv_k3_c4, fc_u16
    assert macro.candidate(picks).encode() == "in8x8x1-conv_k3_s1_c4-conv_k3_s1_c4-fc_u16-out10"
    onehot = [torch.eye(len(p.choices))[j] for p, j in zip(macro.positions, picks, strict=True)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = Supernet(macro, seed=0)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
        for start in range(0, len(x), 64):
            loss = torch.nn.functional.cross_entropy(
                net(x[start : start + 64], onehot), y[start : start + 64]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            logits = net(torch.from_numpy(data.x_val), onehot)
    accuracy = float((logits.argmax(1).numpy() == data.y_val).mean())
    assert accuracy > 0.5


def _trainer(
    aim_ms: float, *, fixed: float | None = None, seed: int = 0
) -> tuple[SupernetTrainer, list[dict[str, object]]]:
    macro, _, latency = setup(space())
    rng = np.random.default_rng(0)
    x = rng.random((160, 1, 8, 8), dtype=np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype(np.int64)
    data = Split(x, y, x[:16], y[:16])
    trainer = SupernetTrainer(
        macro,
        data,
        TrainSettings(batch_size=32),
        seed=seed,
        latency=latency,
        energy=None,
        dual=DualSettings(),
        fixed_lambda=fixed,
    )
    rows: list[dict[str, object]] = []
    trainer.run(
        2,
        round_index=0,
        anneal=True,
        warmup_epochs=0,
        latency_aim_ms=None if fixed is not None else aim_ms,
        energy_aim_mj=None,
        ratio=1.0,
        on_step=rows.append,
    )
    return trainer, rows


def test_dual_ascent_raises_lambda_over_the_target_and_lowers_it_under() -> None:
    over, rows = _trainer(aim_ms=1e-3)  # far below every architecture
    lambdas = [float(r["lambda"]) for r in rows]  # type: ignore[arg-type]
    assert lambdas[0] == 0.0
    assert all(b > a for a, b in itertools.pairwise(lambdas))
    assert over.lam > lambdas[-1]
    # λ pushes E[latency] down: the last step's expectation is below the first's
    assert float(rows[-1]["expected_table_ms"]) < float(rows[0]["expected_table_ms"])  # type: ignore[arg-type]
    under, _ = _trainer(aim_ms=1e3)  # far above: λ stays at its floor 0
    assert under.lam == 0.0
    # from a positive λ, steps under the target lower it
    trainer, _ = _trainer(aim_ms=1e-3)
    before = trainer.lam
    trainer.run(
        1,
        round_index=1,
        anneal=False,
        warmup_epochs=0,
        latency_aim_ms=1e3,
        energy_aim_mj=None,
        ratio=1.0,
        on_step=lambda r: None,
    )
    assert 0.0 <= trainer.lam < before


def test_a_fixed_lambda_stays_fixed_and_the_temperature_anneals() -> None:
    _, rows = _trainer(aim_ms=1.0, fixed=0.5)
    assert {r["lambda"] for r in rows} == {0.5}
    assert all(r["latency_aim_ms"] is None for r in rows)
    taus = [float(r["temperature"]) for r in rows]  # type: ignore[arg-type]
    assert taus[0] == pytest.approx(5.0)
    assert taus[-1] == pytest.approx(0.5)
    assert all(b < a for a, b in itertools.pairwise(taus))


def test_training_is_seeded() -> None:
    a, rows_a = _trainer(aim_ms=0.05, seed=3)
    b, rows_b = _trainer(aim_ms=0.05, seed=3)
    assert rows_a == rows_b
    assert all(torch.equal(x, y) for x, y in zip(a.alpha, b.alpha, strict=True))


def _everything(macro: Macro, latency: CostModel, log_probs: list[np.ndarray]) -> list[tuple]:
    out = []
    for picks in itertools.product(*(range(len(p.choices)) for p in macro.positions)):
        lp = sum(float(log_probs[i][j]) for i, j in enumerate(picks))
        out.append((lp, latency.of(picks), macro.candidate(picks)))
    return out


def test_derive_takes_the_most_probable_in_the_band() -> None:
    macro, _, latency = setup(space())
    log_probs = [torch.log_softmax(p.log(), 0).numpy() for p in random_probs(macro, 4)]
    every = _everything(macro, latency, log_probs)
    lats = sorted(t[1] for t in every)
    lo, hi = lats[len(lats) // 3], lats[len(lats) // 2]
    got = derive(macro, log_probs, latency, bands=[("band", lo, hi)], accept=lambda c: True)
    assert got is not None
    assert got.how == "band"
    assert lo <= got.table_ms <= hi
    best = max((t for t in every if lo <= t[1] <= hi), key=lambda t: t[0])
    assert got.candidate.encode() == best[2].encode()
    assert got.log_prob == pytest.approx(best[0])
    # refused candidates (already measured, over a limit) give way to the next most probable
    limits = Limits(params=cost(best[2]).params - 1)
    second = derive(
        macro,
        log_probs,
        latency,
        bands=[("band", lo, hi)],
        accept=lambda c: c.hash != best[2].hash and limits.violated(cost(c)) is None,
    )
    assert second is not None
    assert second.candidate.hash != best[2].hash
    assert lo <= second.table_ms <= hi
    assert limits.violated(cost(second.candidate)) is None


def test_derive_falls_back_below_the_band_then_to_the_fastest() -> None:
    macro, _, latency = setup(space())
    log_probs = [np.log(np.full(len(p.choices), 1 / len(p.choices))) for p in macro.positions]
    every = _everything(macro, latency, log_probs)
    lats = sorted(t[1] for t in every)
    # a band between two neighbouring architectures holds none: the closest below is taken
    gap = max(range(len(lats) - 1), key=lambda i: lats[i + 1] - lats[i])
    lo, hi = lats[gap] + 1e-9, lats[gap + 1] - 1e-9
    got = derive(macro, log_probs, latency, bands=[("band", lo, hi)], accept=lambda c: True)
    assert got is not None
    assert (got.how, got.table_ms) == ("below band", pytest.approx(lats[gap]))
    # a budget below everything: the fastest
    low = derive(macro, log_probs, latency, bands=[("b", 0.0, lats[0] / 2)], accept=lambda c: True)
    assert low is not None
    assert (low.how, low.table_ms) == ("fastest", pytest.approx(lats[0]))
    # with no bands (fixed λ): the argmax
    peaked = [lp.copy() for lp in log_probs]
    peaked[0][2] += 3.0
    arg = derive(macro, peaked, latency, bands=None, accept=lambda c: True)
    assert arg is not None
    assert arg.how == "argmax"
    assert arg.candidate.encode() == macro.candidate([2, 0, 0]).encode()
    assert derive(macro, log_probs, latency, bands=None, accept=lambda c: False) is None


def test_skip_choices_keep_the_space_depth() -> None:
    sp = space(layer_types=["conv", "skip"], num_layers=(2, 3))
    macro = Macro(sp)
    assert all(p.choices[-1].kind == SKIP for p in macro.positions)
    empty = macro.candidate([len(p.choices) - 1 for p in macro.positions])
    assert empty.layers == ()
    genes = macro.genes(empty)
    assert genes["depth"] == 2
    assert [genes["l0_type"], genes["l1_type"]] == ["skip", "skip"]


def test_table_ops_for_the_cli_default_space_stay_few() -> None:
    from search.cli.search import DEFAULT_SPACE

    sp = SearchSpace(input_shape=(8, 8, 1), num_classes=10, **DEFAULT_SPACE)
    macro = Macro(sp)
    ops = macro.layer_ops()
    assert 50 < len(ops) < 150
    assert macro.architectures > 10_000


# -- the strategy's rounds, with the fake table (the figures fed back are the test's own) --


def _strategy_setup(
    tmp_path: Path, constraints: dict[str, float], **kw: Any
) -> tuple[DifferentiableStrategy, SearchSpace, optuna.Study, FakeTable]:
    sp = space()
    table = FakeTable(energy="energy_mj" in constraints)
    rng = np.random.default_rng(0)
    x = rng.random((96, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, 96).astype(np.int64)
    settings = SearchSettings(
        strategy="differentiable",
        trials=5,
        budgets=Budgets.from_mapping(constraints),
        train=TrainSettings(epochs=1, batch_size=32),
    )
    strategy = DifferentiableStrategy(epochs=1, **kw)
    context = SearchContext(
        sp,
        Split(x, y, x[:16], y[:16]),
        settings,
        None,
        tmp_path,
        Limits(),
        table,
        None,  # type: ignore[arg-type]
    )
    strategy.setup(context)
    study = optuna.create_study(
        sampler=strategy.sampler(5, sp), directions=["maximize", "minimize"]
    )
    return strategy, sp, study, table


def _round(
    strategy: DifferentiableStrategy,
    sp: SearchSpace,
    study: optuna.Study,
    latency: float | Callable[[float], float],
    outcome: str = MEASURED,
) -> TrialRecord:
    trial = study.ask()
    candidate = strategy.propose(trial, sp)
    rnd = strategy.rounds[-1]
    value = latency(rnd.table_ms) if callable(latency) else latency
    reason = "measurement: the board dropped out" if outcome == FAILED else None
    record = TrialRecord(trial.number, candidate.encode(), candidate.hash, outcome, reason)
    if outcome == MEASURED:
        record.latency_ms, record.accuracy = value, 0.5
        study.tell(trial, [0.5, value])
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    strategy.after_trial(study.trials[trial.number], record)
    return record


def _budget_between(table: FakeTable, sp: SearchSpace, fraction: float = 0.5) -> float:
    macro = Macro(sp)
    table.ensure(macro.layer_ops(), None)
    latency = CostModel(macro, table.layer_ms, table.overhead_ms())
    picks = itertools.product(*(range(len(p.choices)) for p in macro.positions))
    lats = [latency.of(p) for p in picks]
    return min(lats) * (max(lats) / min(lats)) ** fraction


def _drive(
    strategy: DifferentiableStrategy,
    sp: SearchSpace,
    study: optuna.Study,
    budget: float,
    board: Callable[[int, float], float],
    rounds: int,
) -> list[bool]:
    """Up to ``rounds`` rounds against ``board`` (round index, table ms -> measured ms),
    as the search loop runs them; per round, whether the test itself finds the figure
    inside [0.8, 1.0] x budget. At each round: the correction is the median of the ratios
    measured so far and 1.0 (computed here from the board's figures), and the strategy is
    finished exactly when that round landed inside the band."""
    inside: list[bool] = []
    ratios: list[float] = []
    for index in range(rounds):
        assert not strategy.finished([])
        record = _round(strategy, sp, study, lambda table_ms, i=index: board(i, table_ms))
        rnd = strategy.rounds[-1]
        assert rnd.index == index
        assert rnd.ratio == pytest.approx(statistics.median([1.0, *ratios]), rel=1e-12)
        assert rnd.predicted_ms == pytest.approx(rnd.table_ms * rnd.ratio, rel=1e-12)
        assert rnd.measured_ms == record.latency_ms
        assert record.latency_ms is not None
        ratios.append(record.latency_ms / rnd.table_ms)
        inside.append(0.8 * budget <= record.latency_ms <= budget)
        assert strategy.finished([]) is inside[-1], (index, record.latency_ms / budget)
        if inside[-1]:
            break
    return inside


def test_rounds_correct_the_target_by_the_measured_ratio_past_a_speed_state(
    tmp_path: Path,
) -> None:
    """A board 1.6x slower than its table, whose round 1 lands in a 0.6x speed state (as a
    small machine does now and then): the median correction does not follow that round.
    Hand-computed: ratios 1.0, 1.3 (= median of 1, 1.6), 1.0 (of 1, 1.6, 0.96), 1.3, 1.6;
    inner-band derivations then measure at 1.36-1.52, 0.63-0.70, 1.36-1.52 and 1.05-1.17 x
    budget (none inside [0.8, 1.0]), and the fifth round lands."""
    budget = _budget_between(FakeTable(), space())
    strategy, sp, study, _ = _strategy_setup(tmp_path, {"latency_ms": budget})

    def board(index: int, table_ms: float) -> float:
        return (0.6 if index == 1 else 1.0) * 1.6 * table_ms

    inside = _drive(strategy, sp, study, budget, board, rounds=5)
    assert [r.how for r in strategy.rounds] == ["inner band"] * 5
    assert [r.ratio for r in strategy.rounds] == pytest.approx([1.0, 1.3, 1.0, 1.3, 1.6])
    assert inside == [False, False, False, False, True]
    measured = [r.measured_ms / budget for r in strategy.rounds]  # type: ignore[operator]
    assert measured[0] > 1.0
    assert measured[1] < 0.8  # feasible, but far under the band: the search goes on
    assert measured[2] > 1.0
    assert measured[3] > 1.0
    assert len({r.hash for r in strategy.rounds}) == 5  # never the same candidate twice
    first, second = strategy.rounds[:2]
    assert 0.85 * budget <= first.predicted_ms <= 0.95 * budget
    assert 0.85 * budget <= second.predicted_ms <= 0.95 * budget
    trace = json.loads((tmp_path / "lambda_trace.json").read_text())
    assert [r["measured_ms"] for r in trace["rounds"]] == [r.measured_ms for r in strategy.rounds]
    rows = [s for s in trace["steps"] if s["round"] == 4]
    assert rows
    assert all(s["latency_aim_ms"] == pytest.approx(0.9 * budget) for s in rows)
    assert all(s["expected_ms"] == pytest.approx(1.6 * s["expected_table_ms"]) for s in rows)
    assert (tmp_path / "lambda_trace.png").exists()
    # the study holds the derived genomes
    assert [sp.decode(t.params).hash for t in study.trials] == [r.hash for r in strategy.rounds]


def test_a_board_over_the_budget_whatever_is_measured_never_finishes(tmp_path: Path) -> None:
    """A board that measures every candidate at 3x the budget: no round lands, so the
    strategy never says it is done (the search then stops at ``trials``); each round takes
    a new candidate, derived for a smaller table figure as the correction grows."""
    budget = _budget_between(FakeTable(), space())
    strategy, sp, study, _ = _strategy_setup(tmp_path, {"latency_ms": budget})
    inside = _drive(strategy, sp, study, budget, lambda index, table_ms: 3 * budget, rounds=4)
    assert inside == [False] * 4
    assert not strategy.finished([])
    assert len({r.hash for r in strategy.rounds}) == 4
    ratios = [r.ratio for r in strategy.rounds]
    assert ratios[0] == 1.0
    assert all(b >= a for a, b in itertools.pairwise(ratios)), ratios
    assert ratios[-1] > 1.0
    tables = [r.table_ms for r in strategy.rounds]
    assert tables[-1] < tables[0]


def test_a_failed_measurement_proposes_the_same_candidate_again(tmp_path: Path) -> None:
    budget = _budget_between(FakeTable(), space())
    strategy, sp, study, _ = _strategy_setup(tmp_path, {"latency_ms": budget})
    failed = _round(strategy, sp, study, 0.0, outcome=FAILED)
    again = _round(strategy, sp, study, lambda t: t)
    assert again.hash == failed.hash
    assert len(strategy.rounds) == 1
    assert strategy.rounds[0].trial == again.number


def test_a_fixed_lambda_is_done_after_one_measured_round(tmp_path: Path) -> None:
    strategy, sp, study, _ = _strategy_setup(tmp_path, {}, fixed_lambda=0.0)
    record = _round(strategy, sp, study, lambda t: t)
    assert strategy.rounds[0].how == "argmax"
    assert strategy.finished([record])
    assert strategy.options()["lambda"] == 0.0


def test_an_energy_budget_gets_its_own_dual_variable(tmp_path: Path) -> None:
    budget = _budget_between(FakeTable(), space())
    # the fake table's energy is 2 mJ per ms: an energy budget that binds before latency
    strategy, _, _, _ = _strategy_setup(tmp_path, {"latency_ms": budget, "energy_mj": budget})
    trainer = strategy._ready.trainer
    assert trainer.energy is not None
    rnd = strategy._next_round()
    rows = strategy._ready.trace.steps
    assert all("lambda_energy" in r and r["expected_energy_mj"] > 0 for r in rows)
    assert rows[-1]["lambda_energy"] > 0
    assert rnd.predicted_energy_mj is not None
    assert rnd.predicted_energy_mj <= budget
