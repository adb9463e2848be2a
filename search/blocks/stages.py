"""The stage (macro) space, as OFA and MCUNet search it: a stem, stages, a head.

A candidate is a fixed **stem** conv (its width scaled by the width multiplier only, as OFA
and MCUNet keep theirs), then per **stage** a depth in its range, one width for the whole
stage, and per block its kernel (and, for ``mbconv``, expansion and squeeze-excite); only a
stage's first block takes the stage's stride. Then the **head**: an optional 1x1 conv
(MobileNet's 1280, scaled only by a multiplier above 1, as MobileNetV2) and global average
pooling. ``BlockNet`` appends the linear classifier. A global width multiplier and, where
given, an input resolution are chosen once per candidate.

The encoding is the blocks' tokens joined by ``-``, after ``r<size>`` when the space has
resolution choices: ``r32-conv_k3_s2_c16_relu6-mb_e6_k3_s1_c16_relu6-gap``. The resolution
is the size of every spatial axis: 2-D data are resized to r x r, 1-D data to length r.
One stage is a ``StageSpec`` (stage_spec.py). See docs/blocks.md for the ``[space.stages]``
table.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import SpaceError
from .base import Block, Shape, make_divisible
from .chain import decode_blocks, encode_blocks
from .registry import KINDS
from .stage_spec import (
    CHOICE_GENES,
    DEFAULT_CHOICES,
    MAX_DEPTH,
    STAGE_GENES,
    StageSpec,
    StemSpec,
    as_act,
    as_choices,
    as_ints,
    as_pair,
    first_choices,
)

__all__ = [
    "CHOICE_GENES",
    "DEFAULT_CHOICES",
    "MAX_DEPTH",
    "STAGE_GENES",
    "RandomSuggest",
    "StageCandidate",
    "StageSpace",
    "StageSpec",
    "StemSpec",
    "Suggest",
]

_RESOLUTION = re.compile(r"r([1-9][0-9]*)")


class Suggest(Protocol):
    """What sampling asks of a trial: ``optuna.Trial`` is one, so is :class:`RandomSuggest`."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def suggest_int(self, name: str, low: int, high: int) -> int: ...


class RandomSuggest:
    """Uniform choices from a seeded generator, for sampling without a study."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return choices[self._rng.randrange(len(choices))]

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return self._rng.randint(low, high)


@dataclass(frozen=True)
class StageCandidate:
    """A point of the stage space: its blocks and its input resolution (None: the data's)."""

    blocks: tuple[Block, ...]
    resolution: int | None = None

    def encode(self) -> str:
        body = encode_blocks(self.blocks)
        return body if self.resolution is None else f"r{self.resolution}-{body}"

    def input_shape(self, data_shape: Sequence[int]) -> Shape:
        """``BlockNet``'s channels-first input shape for data of the channels-last shape the
        search space takes, ``(H, W, C)`` or ``(L, C)``, at this candidate's resolution."""
        if len(data_shape) not in (2, 3):
            raise SpaceError(f"data shape must be (L, C) or (H, W, C), got {tuple(data_shape)}")
        *spatial, channels = (int(d) for d in data_shape)
        if self.resolution is not None:
            spatial = [self.resolution] * len(spatial)
        return (channels, *spatial)


def _split_resolution(text: str) -> tuple[int | None, str]:
    head, _, rest = text.partition("-")
    match = _RESOLUTION.fullmatch(head)
    return (int(match.group(1)), rest) if match else (None, text)


@dataclass(frozen=True)
class StageSpace:
    """The stem, the stages and the head, a global width multiplier and input resolutions."""

    stages: tuple[StageSpec, ...]
    width_multipliers: tuple[float, ...] = (1.0,)
    resolutions: tuple[int, ...] = ()  #: empty: the data's own size, no ``r`` prefix
    stem: StemSpec | None = field(default_factory=StemSpec)
    head_width: int | None = None  #: a last 1x1 conv before the pooling; None: none
    pool: bool = True  #: global average pooling last (else the classifier flattens)
    act: str = "relu6"
    #: units of a hidden ``fc`` block before the classifier, one chosen per candidate
    #: (``fc_units`` gene); empty: none
    fc_units: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        if not stages or not all(isinstance(s, StageSpec) for s in stages):
            raise SpaceError("a stage space needs at least one StageSpec")
        object.__setattr__(self, "stages", stages)
        multipliers = as_choices("width_multipliers", self.width_multipliers)
        bad = [m for m in multipliers if isinstance(m, bool) or not isinstance(m, (int, float))]
        if bad or any(not 0 < m <= 8 for m in multipliers):
            raise SpaceError(
                f"width_multipliers must be numbers in (0, 8], got {list(multipliers)}"
            )
        object.__setattr__(self, "width_multipliers", tuple(float(m) for m in multipliers))
        if self.resolutions:
            object.__setattr__(self, "resolutions", as_ints("resolutions", self.resolutions))
        if self.head_width is not None:
            as_ints("head_width", self.head_width)
        if self.fc_units:
            object.__setattr__(self, "fc_units", as_ints("fc_units", self.fc_units))
            for units in self.fc_units:
                KINDS["fc"].make(units=units, act=self.act)
        as_act("act", self.act)
        if not isinstance(self.pool, bool):
            raise SpaceError(f"pool must be true or false, got {self.pool!r}")
        for multiplier in self.width_multipliers:  # every scaled width a block may have
            for stage in self.stages:
                for width in stage.widths:
                    stage.block(0, self._scaled(width, multiplier), first_choices(stage), self.act)

    def _scaled(self, width: int, multiplier: float) -> int:
        return make_divisible(width * multiplier)

    def scaled(self, width: int, multiplier: float) -> int:
        """A stage width at ``multiplier``, as a candidate's blocks have it."""
        return self._scaled(width, multiplier)

    def head(self, multiplier: float, units: int | None = None) -> list[Block]:
        """The head's blocks at ``multiplier`` with ``units`` in the hidden fc (None: none)."""
        return self._head(multiplier, units)

    def _head(self, multiplier: float, units: int | None = None) -> list[Block]:
        out: list[Block] = []
        if self.head_width is not None:
            width = make_divisible(self.head_width * max(1.0, multiplier))
            out.append(KINDS["conv"].make(kernel=1, stride=1, width=width, act=self.act))
        if self.pool:
            out.append(KINDS["gap"].make())
        if units is not None:
            out.append(KINDS["fc"].make(units=units, act=self.act))
        return out

    def _heads(self, multiplier: float) -> list[list[Block]]:
        """Every head a candidate at ``multiplier`` may end with (one per ``fc_units``)."""
        return [self._head(multiplier, u) for u in self.fc_units] or [self._head(multiplier)]

    def size(self) -> int:
        """Choice combinations (distinct encodings may be fewer where a multiplier rounds two
        widths to one, or a choice has no effect)."""
        stages = math.prod(stage.size() for stage in self.stages)
        heads = max(1, len(self.fc_units))
        return max(1, len(self.resolutions)) * len(self.width_multipliers) * stages * heads

    def sample(self, trial: Suggest) -> StageCandidate:
        """A candidate from ``trial``'s suggestions. The names are stable, so an optuna study
        learns across trials: ``resolution``, ``width_mult``, ``s<i>.depth``, ``s<i>.width``,
        ``s<i>.b<j>.<gene>`` (kernel, expansion, se), ``fc_units``; a choice of one value is
        not asked."""
        resolution = _pick(trial, "resolution", self.resolutions) if self.resolutions else None
        multiplier = float(_pick(trial, "width_mult", self.width_multipliers))
        blocks = [] if self.stem is None else [self.stem.block(multiplier, self.act)]
        for i, stage in enumerate(self.stages):
            low, high = stage.depth
            depth = trial.suggest_int(f"s{i}.depth", low, high) if low < high else low
            width = int(_pick(trial, f"s{i}.width", stage.widths))
            for j in range(depth):
                picks = {
                    gene: _pick(trial, f"s{i}.b{j}.{gene}", values)
                    for gene, values in stage.choices().items()
                }
                blocks.append(stage.block(j, self._scaled(width, multiplier), picks, self.act))
        units = int(_pick(trial, "fc_units", self.fc_units)) if self.fc_units else None
        blocks += self._head(multiplier, units)
        return StageCandidate(tuple(blocks), resolution)

    def decode(self, text: str) -> StageCandidate:
        """The candidate an encoding names; SpaceError when a token is bad, or the blocks are
        not a candidate of this space (the reason names the first block no stage takes)."""
        if not isinstance(text, str) or not text:
            raise SpaceError(f"a stage encoding must be non-empty text, not {text!r}")
        resolution, body = _split_resolution(text) if self.resolutions else (None, text)
        if self.resolutions and resolution is None:
            raise SpaceError(f"'{text}' has no resolution: it must start r<size>-")
        if resolution is not None and resolution not in self.resolutions:
            raise SpaceError(
                f"'{text}': resolution {resolution} is not one of {list(self.resolutions)}"
            )
        blocks = decode_blocks(body)
        reasons: list[tuple[int, str]] = []
        for multiplier in self.width_multipliers:
            mismatch = self._mismatch(blocks, multiplier)
            if mismatch is None:
                return StageCandidate(blocks, resolution)
            reasons.append(mismatch)
        at, why = max(reasons, key=lambda reason: reason[0])
        raise SpaceError(f"'{text}' is not in this stage space: block {at} {why}")

    def _mismatch(self, blocks: tuple[Block, ...], multiplier: float) -> tuple[int, str] | None:
        """None when ``blocks`` are a candidate at ``multiplier``; else (the furthest block
        reached, why it does not fit there)."""
        heads = [tuple(h) for h in self._heads(multiplier)]
        start: list[Block] = [] if self.stem is None else [self.stem.block(multiplier, self.act)]
        if tuple(blocks[: len(start)]) != tuple(start):
            return 0, f"is not the stem {encode_blocks(start)}"
        best: tuple[int, str] = (len(start), "matches no stage")

        def note(at: int, why: str) -> None:
            nonlocal best
            if at > best[0] or best[1] == "matches no stage":
                best = (at, why)

        def walk(stage: int, at: int) -> bool:
            if stage == len(self.stages):
                if tuple(blocks[at:]) in heads:
                    return True
                shown = " or ".join(encode_blocks(h) or "(none)" for h in heads)
                note(at, f"is not the head {shown}")
                return False
            spec = self.stages[stage]
            low, high = spec.depth
            for depth in range(low, high + 1):
                fits = self._stage_fits(spec, blocks[at : at + depth], depth, multiplier)
                if fits is True and walk(stage + 1, at + depth):
                    return True
                if isinstance(fits, tuple):
                    note(at + fits[0], f"{fits[1]} (stage {stage})")
            return False

        return None if walk(0, len(start)) else best

    def _stage_fits(
        self, spec: StageSpec, run: Sequence[Block], depth: int, multiplier: float
    ) -> bool | tuple[int, str]:
        if len(run) < depth:
            return False
        widths = {self._scaled(w, multiplier) for w in spec.widths}
        choices = spec.choices()
        for j, block in enumerate(run):
            if block.kind != spec.kind:
                return j, f"is a {block.kind}, the stage's blocks are {spec.kind}"
            values = block.values
            if values["width"] not in widths or values["width"] != run[0]["width"]:
                return j, f"has width {values['width']}, not the stage's {sorted(widths)}"
            if values["stride"] != (spec.stride if j == 0 else 1):
                return j, f"has stride {values['stride']}"
            for gene, allowed in choices.items():
                if values[gene] not in allowed:
                    return j, f"has {gene} {values[gene]!r}, not one of {list(allowed)}"
            if "act" in values and values["act"] != (spec.act or self.act):
                return j, f"has act {values['act']}, not {spec.act or self.act}"
        return True

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> StageSpace:
        """The space a ``[space.stages]`` table describes (its ``[[space.stages.stage]]``
        entries are the stages); SpaceError naming an unknown key or a bad value."""
        return _space_from(table)


def _pick(trial: Suggest, name: str, values: Sequence[Any]) -> Any:
    return trial.suggest_categorical(name, list(values)) if len(values) > 1 else values[0]


SPACE_KEYS = (
    "stage",
    "width_multipliers",
    "resolutions",
    "stem",
    "head_width",
    "pool",
    "act",
    "fc_units",
)
STAGE_KEYS = ("kind", "depth", "widths", "stride", "kernels", "expansions", "se", "act")
STEM_KEYS = ("width", "kernel", "stride", "act")


def _refuse_unknown(label: str, table: Mapping[str, Any], known: Sequence[str]) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise SpaceError(f"{label} has no key {', '.join(unknown)} (keys: {', '.join(known)})")


def _space_from(table: Mapping[str, Any]) -> StageSpace:
    """The space ``table`` (the contents of ``[space.stages]``) describes."""
    if not isinstance(table, Mapping):
        raise SpaceError(f"[space.stages] must be a table, not {type(table).__name__}")
    _refuse_unknown("[space.stages]", table, SPACE_KEYS)
    entries = table.get("stage")
    if not isinstance(entries, list) or not entries:
        raise SpaceError("[space.stages] needs at least one [[space.stages.stage]]")
    stages = tuple(_stage_from(i, entry) for i, entry in enumerate(entries))
    values: dict[str, Any] = {"stages": stages}
    for key in ("width_multipliers", "resolutions", "fc_units"):
        if key in table:
            values[key] = as_choices(key, table[key])
    for key in ("head_width", "pool", "act"):
        if key in table:
            values[key] = table[key]
    if "stem" in table:
        values["stem"] = _stem_from(table["stem"])
    return StageSpace(**values)


def _stage_from(index: int, entry: Any) -> StageSpec:
    label = f"[[space.stages.stage]] {index}"
    if not isinstance(entry, Mapping):
        raise SpaceError(f"{label} must be a table")
    _refuse_unknown(label, entry, STAGE_KEYS)
    for key in ("kind", "depth", "widths"):
        if key not in entry:
            raise SpaceError(f"{label} needs '{key}'")
    values = dict(entry)
    for key in ("widths", "kernels", "expansions", "se"):
        if key in values:
            values[key] = as_choices(f"{label} {key}", values[key])
    values["depth"] = as_pair(f"{label} depth", values["depth"])
    try:
        return StageSpec(**values)
    except SpaceError as exc:
        raise SpaceError(f"{label}: {exc}") from exc


def _stem_from(value: Any) -> StemSpec | None:
    if value is False:
        return None
    if not isinstance(value, Mapping):
        raise SpaceError(f"stem must be a table or false, not {value!r}")
    _refuse_unknown("stem", value, STEM_KEYS)
    return StemSpec(**value)
