"""The search space: which architectures a search may propose.

Its candidates and their canonical text encoding live in :mod:`search.candidate` (and
are re-exported here). A strategy proposes *genes* (one flat, fixed set of categorical
choices, so crossover and mutation always see the same genome); :meth:`SearchSpace.decode`
turns them into a candidate: ``skip`` slots dropped, feature layers before the
fully-connected ones (stable order), a classifier to ``num_classes`` appended.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .blocks import candidate as _block_candidate  # noqa: F401 - registers its encoding

# the candidate and its encoding, re-exported: ``from search.space import Candidate`` holds
from .candidate import FEATURE_TYPES as FEATURE_TYPES
from .candidate import FLOAT_BYTES as FLOAT_BYTES
from .candidate import LAYER_TYPES as LAYER_TYPES
from .candidate import MAX_CANDIDATE_MB as MAX_CANDIDATE_MB
from .candidate import MB as MB
from .candidate import Candidate as Candidate
from .candidate import Layer as Layer
from .candidate import Shape as Shape
from .candidate import conv_out as conv_out
from .candidate import pool_out as pool_out
from .errors import InvalidCandidate as InvalidCandidate
from .errors import SpaceError

if TYPE_CHECKING:
    from .blocks.stage_spec import StageSpec
    from .blocks.stages import StageSpace


#: The most searched layers a space may have: the genome holds up to seven genes a layer,
#: every one sampled each trial, and a candidate that deep is past what this search's flat
#: blocks are for (the provider probe alone would build num_layers / 2 of them).
MAX_LAYERS = 64


def _is_int(value: object) -> bool:
    """An integer (numpy's too), never a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _choices(name: str, values: Iterable[Any]) -> tuple[Any, ...]:
    """Unique values, in first-seen order (duplicates in a choice list are harmless)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise SpaceError(f"{name} must be a list of choices, got {values!r}")
    seen: list[Any] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    if not seen:
        raise SpaceError(f"{name} must not be empty")
    for v in seen:
        if name != "layer_types" and (not _is_int(v) or v < 1):
            raise SpaceError(f"{name} must hold positive integers, got {v!r}")
        if name == "layer_types" and not isinstance(v, str):
            raise SpaceError(f"layer_types must hold names, got {v!r}")
    return tuple(seen if name == "layer_types" else (int(v) for v in seen))


def _shape(name: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise SpaceError(f"{name} must be a list of sizes, got {value!r}")
    return tuple(value)


Suggest = Callable[[str, Sequence[Any]], Any]


@dataclass(frozen=True)
class SearchSpace:
    """Which architectures the search may propose. ``input_shape`` is channels-last (H, W, C).

    ``output_shape=(1,)`` means one integer label per sample: the number of classes comes
    from the labels unless ``num_classes`` is given; ``(k,)`` with k > 1 means k classes.
    ``num_layers`` is an int or a ``(min, max)`` range; it counts the searched layers, not
    the classifier that is always appended.

    ``stages`` searches the stage (macro) space of ``search.blocks`` instead of the flat
    layers: a ``StageSpace``, its ``StageSpec``s, or a ``[space.stages]`` mapping
    (docs/blocks.md). ``input_shape`` is then ``(H, W, C)`` images or ``(L, C)`` signals,
    the flat settings (``num_layers``, ``layer_types``, ...) are not given, and candidates
    are ``BlockCandidate``s.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...] = (1,)
    num_layers: int | tuple[int, int] = 3
    layer_types: Sequence[str] = ("conv", "pool", "fc")
    conv_kernels: Sequence[int] = (3,)
    conv_strides: Sequence[int] = (1,)
    conv_channels: Sequence[int] = (8, 16, 32)
    pool_sizes: Sequence[int] = (2,)
    pool_strides: Sequence[int] = (2,)
    fc_sizes: Sequence[int] = (64, 128)
    num_classes: int | None = None
    stages: StageSpace | Sequence[StageSpec | Mapping[str, Any]] | Mapping[str, Any] | None = None
    _genes: dict[str, tuple[Any, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.stages is not None:
            self._init_stages()
            return
        shape = _shape("input_shape", self.input_shape)
        if len(shape) == 2:
            shape = (*shape, 1)
        if len(shape) != 3 or any(not _is_int(d) or d < 1 for d in shape):
            raise SpaceError(f"input_shape must be (H, W, C) of positive ints, got {shape}")
        object.__setattr__(self, "input_shape", tuple(int(d) for d in shape))
        n: Any = self.num_layers
        if not _is_int(n) and not (
            isinstance(n, (tuple, list)) and len(n) == 2 and all(_is_int(v) for v in n)
        ):
            raise SpaceError(f"num_layers must be an integer or a (min, max) pair, got {n!r}")
        object.__setattr__(self, "num_layers", int(n) if _is_int(n) else (int(n[0]), int(n[1])))
        lo, hi = self.depth_range
        if not 1 <= lo <= hi:
            raise SpaceError(f"num_layers must be >= 1 (or a range 1 <= min <= max), got {lo, hi}")
        if hi > MAX_LAYERS:
            raise SpaceError(
                f"num_layers {hi}: at most {MAX_LAYERS} searched layers (search.space.MAX_LAYERS)"
            )
        for name in FLAT_SETTINGS[1:]:  # the choice lists (num_layers is checked above)
            object.__setattr__(self, name, _choices(name, getattr(self, name)))
        self._init_classes()
        types = tuple(self.layer_types)
        unknown = [t for t in types if t not in LAYER_TYPES]
        if unknown:
            raise SpaceError(f"unknown layer types {unknown} (known: {', '.join(LAYER_TYPES)})")
        genes: dict[str, tuple[Any, ...]] = {}
        if lo < hi:
            genes["depth"] = tuple(range(lo, hi + 1))
        convs = any(t in ("conv", "dwconv") for t in types)
        for i in range(hi):
            genes[f"l{i}_type"] = types
            if convs:
                genes[f"l{i}_kernel"] = tuple(self.conv_kernels)
                genes[f"l{i}_stride"] = tuple(self.conv_strides)
                genes[f"l{i}_channels"] = tuple(self.conv_channels)
            if "pool" in types:
                genes[f"l{i}_pool"] = tuple(self.pool_sizes)
                genes[f"l{i}_pool_stride"] = tuple(self.pool_strides)
            if "fc" in types:
                genes[f"l{i}_units"] = tuple(self.fc_sizes)
        object.__setattr__(self, "_genes", genes)
        check_space(self)  # before anything is built: no value may need more than the cap

    def _init_classes(self) -> None:
        """``num_classes`` checked, or taken from ``output_shape`` ``(k,)``."""
        if self.num_classes is not None and (not _is_int(self.num_classes) or self.num_classes < 2):
            raise SpaceError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        if self.num_classes is not None:
            object.__setattr__(self, "num_classes", int(self.num_classes))
        object.__setattr__(self, "output_shape", _shape("output_shape", self.output_shape))
        if self.num_classes is None and tuple(self.output_shape) != (1,):
            if len(self.output_shape) != 1 or not _is_int(self.output_shape[0]):
                raise SpaceError(f"output_shape must be (1,) or (k,), got {self.output_shape}")
            if self.output_shape[0] < 2:
                raise SpaceError(f"output_shape must be (1,) or (k,), got {self.output_shape}")
            object.__setattr__(self, "num_classes", int(self.output_shape[0]))

    def _init_stages(self) -> None:
        """The stage space: its genes; the flat settings must be left at their defaults."""
        from .blocks.candidate import blocks_input
        from .blocks.stage_genes import stage_genes

        flat = [
            f.name
            for f in fields(SearchSpace)
            if f.name in FLAT_SETTINGS and getattr(self, f.name) != f.default
        ]
        if flat:
            raise SpaceError(
                f"{', '.join(flat)}: flat-space settings; with stages= the stage space says "
                "the layers (docs/blocks.md)"
            )
        object.__setattr__(self, "stages", as_stage_space(self.stages))
        object.__setattr__(
            self, "input_shape", blocks_input(_shape("input_shape", self.input_shape))
        )
        self._init_classes()
        assert self.stage_space is not None
        object.__setattr__(self, "_genes", stage_genes(self.stage_space))

    @property
    def stage_space(self) -> StageSpace | None:
        """The stage space searched (None: the flat layers)."""
        from .blocks.stages import StageSpace

        return self.stages if isinstance(self.stages, StageSpace) else None

    @property
    def hwc(self) -> tuple[int, int, int]:
        """The (H, W, C) of image data; SpaceError for (L, C) signals (see ``is_1d``)."""
        if len(self.input_shape) != 3:
            raise SpaceError(f"input_shape {self.input_shape} is (L, C), not (H, W, C)")
        h, w, c = self.input_shape
        return (h, w, c)

    @property
    def is_1d(self) -> bool:
        """(L, C) signals (a stage space only; the flat space reads (H, W) as an image)."""
        return len(self.input_shape) == 2

    @property
    def depth_range(self) -> tuple[int, int]:
        n = self.num_layers
        return (n, n) if isinstance(n, int) else (int(n[0]), int(n[1]))

    @property
    def genes(self) -> Mapping[str, tuple[Any, ...]]:
        """The genome: gene name -> its choices. The same for every candidate."""
        return self._genes

    def with_classes(self, num_classes: int) -> SearchSpace:
        from dataclasses import replace

        return replace(self, num_classes=num_classes)

    def suggest(self, suggest: Suggest) -> Candidate:
        """Ask ``suggest(name, choices)`` (e.g. ``trial.suggest_categorical``) for every gene."""
        return self.decode({name: suggest(name, choices) for name, choices in self.genes.items()})

    def decode(self, genes: Mapping[str, Any]) -> Candidate:
        if self.num_classes is None:
            raise SpaceError("num_classes is not known yet (give it, or search with labels)")
        if self.stage_space is not None:
            return self._decode_stages(genes, self.num_classes)
        _lo, hi = self.depth_range
        depth = int(genes.get("depth", hi))
        features: list[Layer] = []
        head: list[Layer] = []
        for i in range(depth):
            kind = genes[f"l{i}_type"]
            if kind in ("conv", "dwconv"):
                features.append(
                    Layer(
                        kind,
                        kernel=int(genes[f"l{i}_kernel"]),
                        stride=int(genes[f"l{i}_stride"]),
                        width=int(genes[f"l{i}_channels"]),
                    )
                )
            elif kind == "pool":
                features.append(
                    Layer(
                        "pool",
                        kernel=int(genes[f"l{i}_pool"]),
                        stride=int(genes[f"l{i}_pool_stride"]),
                    )
                )
            elif kind == "fc":
                head.append(Layer("fc", width=int(genes[f"l{i}_units"])))
        h, w, c = self.input_shape
        return Candidate((h, w, c), tuple(features + head), self.num_classes)

    def _decode_stages(self, genes: Mapping[str, Any], num_classes: int) -> Candidate:
        from .blocks.candidate import BlockCandidate
        from .blocks.stage_genes import GeneSuggest

        assert self.stage_space is not None
        picked = self.stage_space.sample(GeneSuggest(genes, self._genes))
        return BlockCandidate.of(self.input_shape, picked.blocks, num_classes, picked.resolution)

    def to_dict(self) -> dict[str, Any]:
        """The settings that define the space (for the run directory and resume checks)."""
        if self.stage_space is not None:
            from .blocks.stage_genes import space_mapping

            return {
                "input_shape": list(self.input_shape),
                "output_shape": list(self.output_shape),
                "num_classes": self.num_classes,
                "stages": space_mapping(self.stage_space),
            }
        return {
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "num_layers": list(self.depth_range),
            "layer_types": list(self.layer_types),
            "conv_kernels": list(self.conv_kernels),
            "conv_strides": list(self.conv_strides),
            "conv_channels": list(self.conv_channels),
            "pool_sizes": list(self.pool_sizes),
            "pool_strides": list(self.pool_strides),
            "fc_sizes": list(self.fc_sizes),
            "num_classes": self.num_classes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        values = dict(data)
        n = values.pop("num_layers", 3)
        if isinstance(n, (list, tuple)) and len(n) == 2 and all(_is_int(v) for v in n):
            n = n[0] if n[0] == n[1] else (n[0], n[1])
        try:
            return cls(
                input_shape=tuple(values.pop("input_shape")),
                output_shape=tuple(values.pop("output_shape", (1,))),
                num_layers=n,
                **values,
            )
        except TypeError as exc:
            raise SpaceError(f"bad search space settings: {exc}") from exc


#: the flat space's settings, which a stage space (``stages=``) leaves at their defaults
FLAT_SETTINGS = (
    "num_layers",
    "layer_types",
    "conv_kernels",
    "conv_strides",
    "conv_channels",
    "pool_sizes",
    "pool_strides",
    "fc_sizes",
)


def as_stage_space(value: Any) -> StageSpace:
    """A ``StageSpace`` from one, from its ``StageSpec``s (or their tables), or from a
    ``[space.stages]`` mapping."""
    from .blocks.stage_spec import StageSpec
    from .blocks.stages import StageSpace

    if isinstance(value, StageSpace):
        return value
    if isinstance(value, Mapping):
        return StageSpace.from_mapping(value)
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise SpaceError(f"stages must be a StageSpace, a list of stages or a table, not {value!r}")
    entries = list(value)
    if entries and all(isinstance(e, StageSpec) for e in entries):
        return StageSpace(stages=tuple(entries))
    if entries and all(isinstance(e, (StageSpec, Mapping)) for e in entries):
        if any(isinstance(e, StageSpec) for e in entries):
            raise SpaceError("stages: give StageSpecs or stage tables, not both")
        return StageSpace.from_mapping({"stage": entries})
    raise SpaceError(f"stages must hold StageSpecs or stage tables, got {entries!r}")


def _mb(elements: int) -> float:
    return elements * FLOAT_BYTES / MB


def value_floors(space: SearchSpace) -> Iterator[tuple[str, Any, float]]:
    """(gene, value, MB) for each choice of ``space``: the least any candidate holding that
    value needs (weights + activations), counting only what such a candidate cannot do
    without, so a value is never judged by a layout the search would not pick."""
    h, w, c = space.hwc
    yield "input_shape", space.hwc, _mb(h * w * c + 1)  # the input and a first output live
    classes = space.num_classes if space.num_classes is not None else 2
    if space.num_classes is not None:  # a classifier of at least 1 input feature
        yield "num_classes", classes, _mb(2 * classes + classes + 1)
    types = set(space.layer_types)
    if types & {"conv", "dwconv"}:
        cin = min(c, *space.conv_channels)  # the fewest channels a conv layer can take in
        k2 = min(space.conv_kernels) ** 2
        for kernel in space.conv_kernels:
            yield "conv_kernels", kernel, _mb(cin * kernel * kernel)
        for width in space.conv_channels:
            weights = [width * (cin * k2 + 1)] if "conv" in types else []
            if "dwconv" in types:
                weights.append(cin * k2 + cin + cin * width + width)
            yield "conv_channels", width, _mb(min(weights) + 2 * width)  # out + ReLU
    if "fc" in types:
        after = min(min(space.fc_sizes), classes)  # the layer that takes this one's output
        for units in space.fc_sizes:
            yield "fc_sizes", units, _mb(2 * units + units * after + after + 2 * units)


def check_space(space: SearchSpace, cap_mb: float = MAX_CANDIDATE_MB) -> None:
    """Raise SpaceError naming the first gene value no candidate could hold within
    ``cap_mb``. Analytic: nothing is built or allocated."""
    for gene, value, mb in value_floors(space):
        if mb > cap_mb:
            raise SpaceError(
                f"{gene} {value}: a candidate holding it needs at least {mb:,.0f} MB "
                f"(weights + activations), over the {cap_mb:,.0f} MB a candidate may need "
                "(search.space.MAX_CANDIDATE_MB)"
            )
