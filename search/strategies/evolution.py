"""``evolution``: multi-objective NSGA-II with constraints (Optuna's NSGAIISampler).

Objectives: validation accuracy (maximised) and measured latency (minimised). Budgets are
recorded per trial with ``trial.set_constraint`` (value - budget; > 0 = violated), which
NSGA-II reads through constrained domination: a candidate within budget outranks every one
over it, and of two over it the one nearer the budget wins, so over-budget trials steer the
population back inside. The sampler's ``constraints_func`` is deprecated in Optuna 5 and not
used. The population is sized for the trial budget: with Optuna's default of 50, a 40-trial
search would never leave its random first generation.

Selection and crossover are NSGA-II's (binary tournaments by constrained domination, uniform
crossover); the mutation is this module's. Optuna's mutates every gene alike, redrawn
uniformly, which in these spaces mostly hits genes the child does not use (a kernel of a
block beyond its stage's depth) or jumps a width or a resolution across its whole range.
Here a child gets :data:`MUTATIONS` changes on average, at least one, all in genes it
*expresses*; an ordered gene (a depth, width, kernel, resolution, width multiplier, channel
count) mostly steps to a neighbouring choice, so the search can walk down the latency axis a
notch at a time.

Repeats are avoided where they arise: a child that decodes to an architecture already tried
in the study (or one whose shapes do not work) is mutated once more and checked again, up to
``attempts`` times.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from ..cost import cost
from ..space import SearchSpace
from .base import Strategy
from .feasible import LatencyFit

#: re-mutations of a child that repeats an architecture before it is proposed anyway
ATTEMPTS = 32
#: genes a child's mutation changes, on average (at least one): few, so a child stays near
#: the parents selection picked
MUTATIONS = 1.5
#: the chance an ordered gene's mutation steps to a neighbouring choice (else any other)
STEP = 0.8


def mutation_prob(space: SearchSpace, genes: Mapping[str, Any] | None = None) -> float:
    """The chance that each gene a child expresses is mutated: :data:`MUTATIONS` over the
    number it expresses (``genes``'; without them, the deepest candidate's)."""
    if genes is None:
        genes = {n: c[-1] for n, c in space.genes.items()}
    return min(1.0, MUTATIONS / max(1, len(expressed(space, genes))))


def population_size(trials: int) -> int:
    """About five generations within the budget, at least 4 individuals."""
    return max(4, trials // 5)


def expressed(space: SearchSpace, genes: Mapping[str, Any]) -> list[str]:
    """The genes that ``genes`` decodes through (mutating any other changes nothing)."""
    if space.stage_space is not None:
        from ..blocks.stage_genes import expressed as stage_expressed

        return stage_expressed(space.stage_space, genes)
    used = ["depth"] if "depth" in space.genes else []
    depth = int(genes.get("depth", space.depth_range[1]))
    per_type = {
        "conv": ("kernel", "stride", "channels"),
        "dwconv": ("kernel", "stride", "channels"),
        "pool": ("pool", "pool_stride"),
        "fc": ("units",),
        "skip": (),
    }
    for i in range(depth):
        kind = genes[f"l{i}_type"]
        used += [f"l{i}_type", *(f"l{i}_{g}" for g in per_type[kind])]
    return [g for g in used if len(space.genes.get(g, ())) > 1]


def ordered(choices: tuple[Any, ...]) -> bool:
    """Choices that are numbers (never bools) in increasing order: neighbours are near."""
    numbers = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)
    return numbers and all(a < b for a, b in itertools.pairwise(choices))


class DistinctNSGAIISampler(optuna.samplers.NSGAIISampler):
    """NSGA-II that proposes architectures not yet tried in the study, where it can.

    The first generation draws each gene from the same seeded RandomSampler (in the same
    order) as ``random`` does, so both strategies start from the same candidates for a seed;
    later generations are NSGA-II children (its selection and crossover), mutated in the
    genes they express (:meth:`mutate`; ``mutation_prob``: the chance per expressed gene,
    None: :func:`mutation_prob` of the child). A proposal that decodes to an architecture
    already tried (any outcome: measured, pruned, invalid) or to an invalid one is mutated
    in one more used gene and checked again; after ``attempts`` tries it is proposed as it
    is (the search then records a repeat).
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        population_size: int,
        mutation_prob: float | None = None,
        seed: int | None = None,
        attempts: int = ATTEMPTS,
    ) -> None:
        # Optuna's own mutation off: the child it returns holds every gene of its parents
        super().__init__(population_size=population_size, mutation_prob=0.0, seed=seed)
        # decoding needs a class count; it is the same for every candidate of a run
        self._space = space if space.num_classes else space.with_classes(2)
        self._gene_mutation_prob = mutation_prob
        self._attempts = attempts
        self._flops_of: dict[str, float] = {}  #: candidate hash -> its FLOPs
        # genes with one choice never reach a sampler (Optuna fixes them): kept for decoding
        self._fixed = {n: c[0] for n, c in space.genes.items() if len(c) == 1}
        self._distributions: dict[str, BaseDistribution] = {
            n: CategoricalDistribution(list(c)) for n, c in space.genes.items() if len(c) > 1
        }

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        # the whole genome from the first trial on, so every proposal is made (and checked)
        # here rather than gene by gene in sample_independent
        return dict(self._distributions)

    def _tried(self, study: optuna.Study) -> set[str]:
        tried = set()
        for t in study.get_trials(deepcopy=False):
            if set(t.params) >= set(self._distributions):
                tried.add(self._space.decode({**self._fixed, **t.params}).hash)
        return tried

    def _fresh(self, genes: Mapping[str, Any], tried: set[str]) -> bool:
        candidate = self._space.decode({**self._fixed, **genes})
        return candidate.hash not in tried and candidate.is_valid()

    def _used(self, genes: Mapping[str, Any]) -> list[str]:
        return [g for g in expressed(self._space, {**self._fixed, **genes}) if g in genes]

    def _mutated(self, name: str, value: Any) -> Any:
        """Another choice of gene ``name``: mostly a neighbour where its choices are ordered."""
        rng = self._rng.rng
        choices = tuple(self._space.genes[name])
        if ordered(choices) and value in choices and rng.rand() < STEP:
            at = choices.index(value)
            near = [choices[i] for i in (at - 1, at + 1) if 0 <= i < len(choices)]
            return near[rng.randint(len(near))]
        others = [c for c in choices if c != value]
        return others[rng.randint(len(others))]

    def mutate(self, genes: dict[str, Any]) -> dict[str, Any]:
        """``genes`` with each expressed gene changed with the mutation chance, and at
        least one changed (a child never repeats its parent as it is)."""
        used = self._used(genes)
        if not used:
            return genes
        rng = self._rng.rng
        if self._gene_mutation_prob is not None:
            chance = self._gene_mutation_prob
        else:
            chance = min(1.0, MUTATIONS / len(used))
        picked = [name for name in used if rng.rand() < chance]
        for name in picked or [used[rng.randint(len(used))]]:
            genes[name] = self._mutated(name, genes[name])
        return genes

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        generation = self.get_trial_generation(study, trial)
        parents = self.get_parent_population(study, generation)
        if not parents:  # the first generation: random's seeded draws
            genes = {
                name: self._random_sampler.sample_independent(study, trial, name, dist)
                for name, dist in search_space.items()
            }
            return self._distinct(study, genes)
        child = self._child_generation_strategy(study, search_space, parents)
        genes = self.mutate({name: child[name] for name in search_space})
        return self._distinct(study, genes, child=child, fit=self._latency_fit(study))

    def _distinct(
        self,
        study: optuna.Study,
        genes: dict[str, Any],
        *,
        child: Mapping[str, Any] | None = None,
        fit: LatencyFit | None = None,
    ) -> dict[str, Any]:
        """``genes``, mutated again while they repeat a tried architecture (one more gene
        each time) or, given the ``fit``, while they are likely over the latency budget
        (mutated afresh from the crossover ``child``), up to ``attempts`` times."""
        tried = self._tried(study)
        rng = self._rng.rng
        for _ in range(self._attempts):
            if not self._fresh(genes, tried):
                used = self._used(genes)
                if not used:
                    break
                name = used[rng.randint(len(used))]
                genes[name] = self._mutated(name, genes[name])
            elif fit is not None and child is not None and fit.likely_over(self._flops(genes)):
                genes = self.mutate({name: child[name] for name in genes})
            else:
                break
        return genes

    def _flops(self, genes: Mapping[str, Any]) -> float:
        candidate = self._space.decode({**self._fixed, **genes})
        if candidate.hash not in self._flops_of:
            self._flops_of[candidate.hash] = float(cost(candidate).flops)
        return self._flops_of[candidate.hash]

    def _latency_fit(self, study: optuna.Study) -> LatencyFit | None:
        """FLOPs against measured latency over the study's measured trials with a latency
        budget (one target: the latency is the second value); None without enough."""
        points = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            slack = t.constraints.get("latency_ms")
            if slack is None or not t.values or len(t.values) < 2:
                continue
            if not set(t.params) >= set(self._distributions):
                continue
            latency = float(t.values[1])
            points.append((self._flops(t.params), latency, latency - float(slack)))
        return LatencyFit.of(points)


class EvolutionStrategy(Strategy):
    name = "evolution"
    predictor_default = True

    def __init__(self, *, seed: int | None = 0, population: int | None = None) -> None:
        super().__init__(seed=seed)
        self.population = population

    def sampler(self, trials: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
        size = self.population or population_size(trials)
        return DistinctNSGAIISampler(space, population_size=size, seed=self.seed)

    def describe(self) -> str:
        return f"{self.name} (NSGA-II, seed {self.seed})"
