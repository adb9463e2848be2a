"""Evolution on the stage space: NSGA-II's children mutated in the genes they express, an
ordered gene stepping to a neighbouring choice, the first generation random's own draws,
and over-budget trials steering the population back inside the budget (constrained
domination). The sampler alone: the analytic cost stands in for training and measuring."""

from __future__ import annotations

import optuna
import pytest

from search import SearchSpace
from search.blocks import edge_space
from search.blocks.stage_genes import expressed
from search.cost import cost
from search.strategies import EvolutionStrategy, get_strategy, mutation_prob
from search.strategies.evolution import MUTATIONS, DistinctNSGAIISampler, ordered
from search.strategies.feasible import MARGIN, LatencyFit


def stage_space() -> SearchSpace:
    """benchmarks/vs_reference.py's space: 23 genes, 2.5 million combinations."""
    stages = edge_space()
    return SearchSpace(input_shape=(32, 32, 3), stages=stages).with_classes(10)


def sampler(space: SearchSpace, seed: int = 0) -> DistinctNSGAIISampler:
    made = EvolutionStrategy(seed=seed).sampler(20, space)
    assert isinstance(made, DistinctNSGAIISampler)
    return made


def deepest(space: SearchSpace) -> dict[str, object]:
    return {name: choices[-1] for name, choices in space.genes.items()}


def test_ordered_choices_are_increasing_numbers() -> None:
    assert ordered((16, 24, 32))
    assert ordered((0.5, 0.75, 1.0))
    assert not ordered((False, True))  # a bool is no number to step along
    assert not ordered(("conv", "pool"))
    assert not ordered((32, 16))


def test_an_ordered_gene_mostly_steps_to_a_neighbouring_choice() -> None:
    space = stage_space()
    evolution = sampler(space)
    steps = [evolution._mutated("resolution", 16) for _ in range(200)]
    assert set(steps) <= {24, 32}
    assert steps.count(24) > 0.7 * len(steps)  # the neighbour, but not always
    middle = [evolution._mutated("s1.width", 32) for _ in range(200)]
    assert 32 not in middle
    assert {24, 40} == set(middle)
    flips = {evolution._mutated("s1.b0.se", False) for _ in range(20)}
    assert flips == {True}


def test_a_child_is_mutated_only_in_genes_it_expresses_and_in_at_least_one() -> None:
    space = stage_space()
    evolution = sampler(space, seed=3)
    genes = {name: choices[0] for name, choices in space.genes.items() if len(choices) > 1}
    used = set(expressed(space.stage_space, genes))  # type: ignore[arg-type]
    changed_counts = []
    for _ in range(300):
        child = evolution.mutate(dict(genes))
        changed = {name for name in genes if child[name] != genes[name]}
        assert changed
        assert changed <= used  # depth 1 everywhere: the blocks beyond it are left alone
        changed_counts.append(len(changed))
    mean = sum(changed_counts) / len(changed_counts)
    assert 1.0 < mean < MUTATIONS + 1.0


def test_mutation_prob_is_per_expressed_gene() -> None:
    space = stage_space()
    every = len(expressed(space.stage_space, deepest(space)))  # type: ignore[arg-type]
    assert mutation_prob(space) == pytest.approx(MUTATIONS / every)


def test_the_latency_fit_turns_away_only_what_it_is_sure_is_over() -> None:
    # latency = 1e-3 * FLOPs ** 0.5 exactly; budget 2 ms (FLOPs 4e6 meet it exactly)
    points = [(f, 1e-3 * f**0.5, 2.0) for f in (1e6, 2e6, 4e6, 9e6, 16e6)]
    fit = LatencyFit.of(points)
    assert fit is not None
    assert fit.slope == pytest.approx(0.5)
    assert fit.spread == pytest.approx(0.0, abs=1e-9)
    assert not fit.likely_over(4e6)
    assert not fit.likely_over(4e6 * 1.15)  # 7% over: within MARGIN (10% in log)
    assert fit.likely_over(4e6 * 1.5)  # 22% over
    assert LatencyFit.of(points[:3]) is None  # too few measured to guess from
    noisy = [(f, lat * (1.3 if i % 2 else 1 / 1.3), b) for i, (f, lat, b) in enumerate(points)]
    loose = LatencyFit.of(noisy)
    assert loose is not None
    assert loose.spread > MARGIN
    assert not loose.likely_over(4e6 * 1.5)  # a spread fit is not sure of 22%
    assert LatencyFit.of([(1e6, float("inf"), 2.0)] * 5) is None  # a failed board's +inf


def _ask_tell(
    strategy: str, seed: int, trials: int, space: SearchSpace, budget: float
) -> list[tuple[str, float]]:
    """(encoding, FLOPs) of each proposal, told (params, FLOPs) at once with the FLOPs
    budget as the constraint: a bigger model is "more accurate" and slower."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = get_strategy(strategy, seed=seed)
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=s.sampler(trials, space)
    )
    out = []
    for _ in range(trials):
        trial = study.ask()
        candidate = s.propose(trial, space)
        c = cost(candidate)
        trial.set_constraint("latency_ms", c.flops - budget)  # FLOPs stand for latency
        study.tell(trial, [float(c.params), float(c.flops)])
        out.append((candidate.encode(), c.flops))
    return out


def test_on_the_stage_space_evolution_starts_as_random_then_keeps_within_budget() -> None:
    space = stage_space()
    # the budget: the median FLOPs of random's own first 20 draws (seed 0): it binds
    first = _ask_tell("random", 0, 20, space, budget=1.0)
    budget = sorted(f for _, f in first)[len(first) // 2]
    within = {"random": 0, "evolution": 0}
    for seed in range(4):
        rand = _ask_tell("random", seed, 20, space, budget)
        evo = _ask_tell("evolution", seed, 20, space, budget)
        size = 4  # population_size(20)
        assert [e for e, _ in evo[:size]] == [e for e, _ in rand[:size]]
        assert len({e for e, _ in evo}) == len(evo)  # no repeats
        within["random"] += sum(f <= budget for _, f in rand[size:])
        within["evolution"] += sum(f <= budget for _, f in evo[size:])
    # after the first generation, evolution's children are within budget far more often
    assert within["evolution"] >= 1.3 * within["random"]
