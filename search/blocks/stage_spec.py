"""What one stage of the stage space is (``StageSpec``) and its stem (``StemSpec``), with
the checks that refuse a bad one by reason. The space itself is in stages.py."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SpaceError
from .base import ACTIVATIONS, Block, BlockKind, make_divisible
from .registry import KINDS

#: the most blocks one stage may have (OFA's and MCUNet's stages have at most 4)
MAX_DEPTH = 16
#: the genes a stage fills itself; a stage kind must have ``stride`` and ``width``
STAGE_GENES = ("stride", "width")
#: the per-block choices a stage may give, by the gene each fills
CHOICE_GENES = {"kernels": "kernel", "expansions": "expansion", "se": "se"}
#: the value a stage takes for a choice gene it does not name
DEFAULT_CHOICES: dict[str, tuple[Any, ...]] = {"kernel": (3,), "expansion": (6,), "se": (False,)}


def as_ints(label: str, values: Any, *, low: int = 1) -> tuple[int, ...]:
    """Distinct integers >= ``low`` (one value or a list); SpaceError otherwise."""
    items = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    bad = [v for v in items if isinstance(v, bool) or not isinstance(v, int) or v < low]
    if not items or bad:
        raise SpaceError(f"{label} must be integers >= {low}, got {values!r}")
    if len(set(items)) != len(items):
        raise SpaceError(f"{label} name a value twice: {list(items)}")
    return items


def as_choices(label: str, values: Any) -> tuple[Any, ...]:
    """``values`` (one value or a list) as a tuple of distinct choices; SpaceError if none."""
    items = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if not items:
        raise SpaceError(f"{label} must name at least one value")
    if len(set(items)) != len(items):
        raise SpaceError(f"{label} name a value twice: {list(items)}")
    return items


def as_act(label: str, value: Any) -> str:
    """One of ``ACTIVATIONS``; SpaceError otherwise."""
    if value not in ACTIVATIONS:
        raise SpaceError(f"{label} must be one of {'|'.join(ACTIVATIONS)}, not {value!r}")
    return str(value)


@dataclass(frozen=True)
class StemSpec:
    """The first conv: ``conv_k<kernel>_s<stride>_c<width x multiplier>_<act>``."""

    width: int = 16
    kernel: int = 3
    stride: int = 2
    act: str | None = None  #: None: the space's ``act``

    def __post_init__(self) -> None:
        as_ints("stem width", self.width)
        if self.act is not None:
            as_act("stem act", self.act)
        probe = {"kernel": self.kernel, "stride": self.stride, "width": self.width, "act": "relu"}
        try:
            KINDS["conv"].make(**probe)
        except SpaceError as exc:
            raise SpaceError(f"stem: {exc}") from exc

    def block(self, multiplier: float, act: str) -> Block:
        return KINDS["conv"].make(
            kernel=self.kernel,
            stride=self.stride,
            width=make_divisible(self.width * multiplier),
            act=self.act or act,
        )


@dataclass(frozen=True)
class StageSpec:
    """One stage: ``depth`` blocks of ``kind`` (``(low, high)``, both included), one of
    ``widths`` for the whole stage (times the multiplier, a multiple of 8), ``stride`` on
    the first block (1 on the others), and per block one of ``kernels`` / ``expansions`` /
    ``se`` where the kind has that gene (None: the kind's default, kernel 3, expansion 6, no
    squeeze-excite). ``act`` None takes the space's."""

    kind: str
    depth: tuple[int, int]
    widths: tuple[int, ...]
    stride: int = 1
    kernels: tuple[int, ...] | None = None
    expansions: tuple[int, ...] | None = None
    se: tuple[bool, ...] | None = None
    act: str | None = None

    def __post_init__(self) -> None:
        kind = self.block_kind()
        genes = {gene.name: gene for gene in kind.genes}
        missing = [g for g in STAGE_GENES if g not in genes]
        if missing:
            raise SpaceError(
                f"stage kind '{self.kind}' has no {' or '.join(missing)} gene: a stage sets "
                "each block's stride and width"
            )
        low, high = as_pair("stage depth", self.depth)
        if not 1 <= low <= high <= MAX_DEPTH:
            raise SpaceError(
                f"stage depth must be [low, high] with 1 <= low <= high <= {MAX_DEPTH}, "
                f"got {list(self.depth)}"
            )
        object.__setattr__(self, "depth", (low, high))
        object.__setattr__(self, "widths", as_ints("stage widths", self.widths))
        for width in self.widths:
            genes["width"].check(width)
        genes["stride"].check(self.stride)
        for key, gene_name in CHOICE_GENES.items():
            given = getattr(self, key)
            if given is None:
                continue
            if gene_name not in genes:
                raise SpaceError(f"stage kind '{self.kind}' has no {gene_name} gene: drop {key}")
            values = as_choices(f"stage {key}", given)
            for value in values:
                genes[gene_name].check(value)
            object.__setattr__(self, key, values)
        if self.act is not None:
            if "act" not in genes:
                raise SpaceError(f"stage kind '{self.kind}' has no act gene: drop act")
            as_act("stage act", self.act)

    def block_kind(self) -> BlockKind:
        if self.kind not in KINDS:
            raise SpaceError(f"unknown stage kind '{self.kind}' (known: {', '.join(KINDS)})")
        return KINDS[self.kind]

    def choices(self) -> dict[str, tuple[Any, ...]]:
        """Per-block choices by gene (kernel, expansion, se), those the kind has."""
        genes = {gene.name for gene in self.block_kind().genes}
        out: dict[str, tuple[Any, ...]] = {}
        for key, gene_name in CHOICE_GENES.items():
            if gene_name in genes:
                given = getattr(self, key)
                out[gene_name] = given if given is not None else DEFAULT_CHOICES[gene_name]
        return out

    def size(self) -> int:
        """Choice combinations of this stage: widths x sum over depths of per-block ones."""
        per_block = math.prod(len(v) for v in self.choices().values())
        low, high = self.depth
        depths: int = sum(per_block**d for d in range(low, high + 1))
        return len(self.widths) * depths

    def block(self, index: int, width: int, picks: Mapping[str, Any], act: str) -> Block:
        """The stage's block ``index`` (0: the first, with the stride)."""
        values: dict[str, Any] = {
            **picks,
            "stride": self.stride if index == 0 else 1,
            "width": width,
        }
        if "act" in {gene.name for gene in self.block_kind().genes}:
            values["act"] = self.act or act
        return self.block_kind().make(**values)


def as_pair(label: str, value: Any) -> tuple[int, int]:
    """``[low, high]`` or one integer (``n``: ``(n, n)``)."""
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    raise SpaceError(f"{label} must be [low, high] or one integer, got {value!r}")


def first_choices(stage: StageSpec) -> dict[str, Any]:
    """The first of each per-block choice (to probe a width with)."""
    return {gene: values[0] for gene, values in stage.choices().items()}
