"""The stage space as the search's strategies see a space: one fixed set of genes.

``stage_genes(space)`` names every choice :meth:`StageSpace.sample` may ask, with its
choices (``resolution``, ``width_mult``, ``s<i>.depth``, ``s<i>.width``,
``s<i>.b<j>.<gene>`` for every block up to the stage's deepest), so evolution, random and
optuna see the same genome for every candidate; a block beyond the depth a candidate has
simply leaves its genes unused (``expressed`` lists the ones that are). ``GeneSuggest``
answers ``sample`` from such a gene mapping. ``space_mapping`` is the inverse of
``StageSpace.from_mapping``, for the run directory's record and a resume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import SpaceError
from .stages import StageSpace


def stage_genes(space: StageSpace) -> dict[str, tuple[Any, ...]]:
    """Gene name -> its choices, in the order ``sample`` asks them."""
    genes: dict[str, tuple[Any, ...]] = {}
    if space.resolutions:
        genes["resolution"] = tuple(space.resolutions)
    genes["width_mult"] = tuple(space.width_multipliers)
    for i, stage in enumerate(space.stages):
        low, high = stage.depth
        genes[f"s{i}.depth"] = tuple(range(low, high + 1))
        genes[f"s{i}.width"] = tuple(stage.widths)
        for j in range(high):
            for gene, values in stage.choices().items():
                genes[f"s{i}.b{j}.{gene}"] = tuple(values)
    if space.fc_units:
        genes["fc_units"] = tuple(space.fc_units)
    return genes


def expressed(space: StageSpace, genes: Mapping[str, Any]) -> list[str]:
    """The genes with more than one choice that ``genes`` decodes through (mutating any
    other gives the same candidate): the blocks within each stage's chosen depth."""
    used = ["resolution", "width_mult"]
    for i, stage in enumerate(space.stages):
        used += [f"s{i}.depth", f"s{i}.width"]
        depth = int(genes.get(f"s{i}.depth", stage.depth[1]))
        used += [f"s{i}.b{j}.{g}" for j in range(depth) for g in stage.choices()]
    used.append("fc_units")
    every = stage_genes(space)
    return [g for g in used if len(every.get(g, ())) > 1]


class GeneSuggest:
    """``StageSpace.sample``'s trial, answered from a gene mapping (a strategy's genes)."""

    def __init__(self, genes: Mapping[str, Any], every: Mapping[str, Sequence[Any]]) -> None:
        self._genes, self._every = genes, every

    def _value(self, name: str) -> Any:
        if name in self._genes:
            return self._genes[name]
        choices = self._every.get(name)
        if not choices:
            raise SpaceError(f"no gene '{name}' in the stage space")
        return choices[0]

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self._value(name)
        if value not in choices:
            raise SpaceError(f"gene {name} = {value!r} is not one of {list(choices)}")
        return value

    def suggest_int(self, name: str, low: int, high: int) -> int:
        value = self._value(name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise SpaceError(f"gene {name} = {value!r} is not an integer in [{low}, {high}]")
        return int(value)


def space_mapping(space: StageSpace) -> dict[str, Any]:
    """The ``[space.stages]`` table of ``space`` (JSON- and TOML-safe):
    ``StageSpace.from_mapping(space_mapping(s)) == s``."""
    out: dict[str, Any] = {
        "width_multipliers": list(space.width_multipliers),
        "pool": space.pool,
        "act": space.act,
    }
    if space.resolutions:
        out["resolutions"] = list(space.resolutions)
    if space.head_width is not None:
        out["head_width"] = space.head_width
    if space.fc_units:
        out["fc_units"] = list(space.fc_units)
    if space.stem is None:
        out["stem"] = False
    else:
        stem: dict[str, Any] = {
            "width": space.stem.width,
            "kernel": space.stem.kernel,
            "stride": space.stem.stride,
        }
        if space.stem.act is not None:
            stem["act"] = space.stem.act
        out["stem"] = stem
    stages = []
    for spec in space.stages:
        entry: dict[str, Any] = {
            "kind": spec.kind,
            "depth": list(spec.depth),
            "widths": list(spec.widths),
            "stride": spec.stride,
        }
        for key in ("kernels", "expansions", "se", "act"):
            value = getattr(spec, key)
            if value is not None:
                entry[key] = list(value) if isinstance(value, tuple) else value
        stages.append(entry)
    out["stage"] = stages
    return out
