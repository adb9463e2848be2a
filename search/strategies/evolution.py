"""``evolution``: multi-objective NSGA-II with constraints (Optuna's NSGAIISampler).

Objectives: validation accuracy (maximised) and measured latency (minimised). Budgets are
recorded per trial with ``trial.set_constraint`` (value - budget; > 0 = violated), which
NSGA-II reads through constrained domination; the sampler's ``constraints_func`` is
deprecated in Optuna 5 and not used. The population is sized for the trial budget: with
Optuna's default of 50, a 40-trial search would never leave its random first generation.

Repeats are avoided where they arise. Optuna's NSGA-II knows genes, not architectures: in a
small space many children (crossover of two similar parents, or a mutation of a gene the
child does not use) decode to an architecture already tried, and such a trial measures
nothing new. :class:`DistinctNSGAIISampler` proposes whole genomes in ``sample_relative``
(NSGA-II's own selection, crossover and mutation), decodes each, and while it repeats an
architecture of the study (or its shapes do not work) mutates one gene the candidate *uses*
and checks again, up to ``attempts`` times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial

from ..space import SearchSpace
from .base import Strategy

#: re-mutations of a child that repeats an architecture before it is proposed anyway
ATTEMPTS = 32


def mutation_prob(space: SearchSpace) -> float:
    """About three genes mutated per child. Optuna's default (one gene in all) mostly hits
    genes the child does not use (a kernel of an fc slot, a slot beyond its depth), so the
    child decodes to its parent and the trial repeats a measured candidate."""
    return min(1.0, 3.0 / max(1, len(space.genes)))


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


class DistinctNSGAIISampler(optuna.samplers.NSGAIISampler):
    """NSGA-II that proposes architectures not yet tried in the study, where it can.

    The first generation draws each gene from the same seeded RandomSampler (in the same
    order) as ``random`` does, so both strategies start from the same candidates for a seed;
    later generations are NSGA-II children. A proposal that decodes to an architecture
    already tried (any outcome: measured, pruned, invalid) or to an invalid one is mutated
    in one used gene and checked again; after ``attempts`` tries it is proposed as it is
    (the search then records a repeat).
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
        super().__init__(population_size=population_size, mutation_prob=mutation_prob, seed=seed)
        # decoding needs a class count; it is the same for every candidate of a run
        self._space = space if space.num_classes else space.with_classes(2)
        self._attempts = attempts
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
        child = self._child_generation_strategy(study, search_space, parents) if parents else {}
        genes: dict[str, Any] = {}
        for name, dist in search_space.items():  # genes left to mutate: drawn at random
            genes[name] = (
                child[name]
                if name in child
                else self._random_sampler.sample_independent(study, trial, name, dist)
            )
        tried = self._tried(study)
        rng = self._rng.rng
        for _ in range(self._attempts):
            if self._fresh(genes, tried):
                break
            used = expressed(self._space, {**self._fixed, **genes})
            if not used:
                break
            name = used[rng.randint(len(used))]
            choices = [c for c in self._space.genes[name] if c != genes[name]]
            genes[name] = choices[rng.randint(len(choices))]
        return genes


class EvolutionStrategy(Strategy):
    name = "evolution"
    predictor_default = True

    def __init__(self, *, seed: int | None = 0, population: int | None = None) -> None:
        super().__init__(seed=seed)
        self.population = population

    def sampler(self, trials: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
        size = self.population or population_size(trials)
        return DistinctNSGAIISampler(
            space, population_size=size, mutation_prob=mutation_prob(space), seed=self.seed
        )

    def describe(self) -> str:
        return f"{self.name} (NSGA-II, seed {self.seed})"
