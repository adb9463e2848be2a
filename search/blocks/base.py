"""What every block kind is made of: shapes, the canonical token, the kind's hooks (the
genes live in genes.py, the cost trace in trace.py; both are re-exported here).

No torch and no onnx here (the space and the cost check use this module on hosts that only
decode and count); a kind's torch module and ONNX emission import them when first called.

Encoding (timm-style, canonical: one block, one token): the kind's prefix, then one part per
gene in the kind's fixed order, joined by ``_``. An integer gene is its tag and the number
(``k3``, no sign, no leading zero), a word gene the word itself (``relu6``, ``max``), a flag
its word when set and nothing when not (``se``). ``mb_e6_k5_s2_c24_se_hswish`` is an mbconv of
expansion 6, kernel 5, stride 2, 24 channels, with squeeze-excite, hswish. Decoding re-encodes
and compares, so any other spelling of a block (a part out of order, ``k03``) is refused.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InvalidCandidate, SearchError, SpaceError
from .genes import (
    ACT,
    ACTIVATIONS,
    MAX_WIDTH,
    NAME,
    NUMBER,
    STRIDE,
    STRIDES,
    WIDTH,
    FlagGene,
    Gene,
    IntGene,
    WordGene,
)
from .trace import FLOAT_BYTES, BlockCost, Trace, trace_activation, trace_conv

__all__ = [
    "ACT",
    "ACTIVATIONS",
    "FLOAT_BYTES",
    "MAX_WIDTH",
    "STRIDE",
    "STRIDES",
    "WIDTH",
    "Block",
    "BlockCost",
    "BlockKind",
    "FlagGene",
    "Gene",
    "IntGene",
    "PruneGroup",
    "Shape",
    "SupernetSlot",
    "TableOp",
    "Trace",
    "WordGene",
    "channels_of",
    "check_kind",
    "conv_spatial",
    "elements",
    "expect",
    "feature_map",
    "make_divisible",
    "same_conv_output_shape",
    "same_padding",
    "trace_activation",
    "trace_conv",
    "window_output_shape",
]

if TYPE_CHECKING:
    from torch import nn

    from .graph import GraphBuilder

#: ``(channels, *spatial)``: ``(C, L)`` or ``(C, H, W)`` for a feature map, batch excluded;
#: ``(F,)`` once a block has flattened it (``fc``).
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Block:
    """One block: its kind's name and its gene values in the kind's order. Make one with
    :meth:`BlockKind.make` or ``search.blocks.decode``; both check the values."""

    kind: str
    genes: tuple[tuple[str, Any], ...] = ()

    def __getitem__(self, name: str) -> Any:
        for gene, value in self.genes:
            if gene == name:
                return value
        raise KeyError(f"block {self.kind} has no gene '{name}'")

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.genes)


@dataclass(frozen=True)
class TableOp:
    """One entry of the per-layer latency table: a one-block ONNX model measured alone.

    ``token`` is the block's canonical token (``mb_e6_k3_s1_c16_relu6``), or ``cls_u<N>`` for
    the net's linear classifier; ``in_shape`` is channels-first without the batch. The key,
    ``<token>@<C>x<H>x<W>``, has the form of ``search.predict.ops.LayerOp.key`` (two
    blocks with one token on one input share an entry); ``kind`` is the block kind (or
    ``classifier``), the column a per-kind fit sums it in.
    """

    kind: str
    token: str
    in_shape: Shape

    def key(self) -> str:
        return f"{self.token}@{'x'.join(str(d) for d in self.in_shape)}"


@dataclass(frozen=True)
class PruneGroup:
    """Channels of one block that structured pruning removes together (the same indices from
    every module listed), and what their width is to the encoding.

    ``modules`` are paths inside the block's torch module (``body.0.conv``; ``""`` the whole
    block) whose *output* channels these are: conv filters, BatchNorm features, linear rows;
    the layers that read them follow from the dataflow (Torch-Pruning's graph finds them).
    ``gene``: the gene whose value this width is; the pruned block re-encodes with what is
    left (:meth:`BlockKind.pruned`). ``tied_to_input``: these are the block's input channels
    themselves (an identity residual add, a depthwise conv over the input, a pooling), pruned
    with the previous block's output. ``derived``: a width computed from the input's
    (mbconv's hidden ``e x input``, the squeeze-excite's), which no gene can say once pruned:
    neither it nor the input it comes from may be pruned. ``output``: the block's output
    channels (the next block's input).
    """

    name: str
    width: int
    modules: tuple[str, ...] = ()
    gene: str | None = None
    tied_to_input: bool = False
    derived: bool = False
    output: bool = False


@dataclass(frozen=True)
class SupernetSlot:
    """One block position of a stage supernet (``search.blocks.supernet``): ``dims``
    spatial axes, the input's and the output's channels at their largest, the stride, the
    activation, and the choices it may take (a mapping of the kind's choice genes each,
    e.g. ``{"kernel": 5, "expansion": 3, "se": False}``)."""

    dims: int
    in_max: int
    out_max: int
    stride: int
    act: str | None
    choices: tuple[Mapping[str, Any], ...]


def elements(shape: Shape) -> int:
    return math.prod(shape)


def feature_map(kind: str, shape: Shape) -> tuple[int, tuple[int, ...]]:
    """(channels, spatial sizes) of a feature map; InvalidCandidate once it was flattened."""
    if len(shape) not in (2, 3):
        raise InvalidCandidate(f"{kind} needs a feature map (C, L) or (C, H, W), got {shape}", -1)
    return shape[0], tuple(shape[1:])


def conv_spatial(
    kind: str, spatial: tuple[int, ...], kernel: int, stride: int, padding: int
) -> tuple[int, ...]:
    """Output sizes of a conv or pool window; InvalidCandidate where one drops below 1."""
    out = tuple((size + 2 * padding - kernel) // stride + 1 for size in spatial)
    if any(size < 1 for size in out):
        raise InvalidCandidate(
            f"{kind} (kernel {kernel}, stride {stride}) makes the spatial size "
            f"{'x'.join(map(str, spatial))} drop below 1",
            -1,
        )
    return out


def same_padding(kernel: int) -> int:
    """``kernel // 2`` each side, as search.space: odd kernels keep the size at stride 1."""
    return kernel // 2


def window_output_shape(
    kind: str, shape: Shape, channels: int, kernel: int, stride: int, padding: int
) -> Shape:
    """The output of a conv or pool window over the feature map ``shape``: ``channels``
    and each spatial size after the window; InvalidCandidate where it does not work."""
    _, spatial = feature_map(kind, shape)
    return (channels, *conv_spatial(kind, spatial, kernel, stride, padding))


def same_conv_output_shape(kind: str, block: Block, shape: Shape) -> Shape:
    """The output of a block whose genes ``kernel``, ``stride`` and ``width`` describe one
    'same'-padded conv window (conv, dwconv, mbconv)."""
    kernel = block["kernel"]
    return window_output_shape(
        kind, shape, block["width"], kernel, block["stride"], same_padding(kernel)
    )


class BlockKind(ABC):
    """A kind of block: subclass, set ``name``, ``prefix``, ``genes`` and ``summary``, and
    implement shape inference, cost, the torch module and its ONNX emission.

    ``module(block, shape)`` builds the torch module for an input of ``shape``;
    ``emit(block, module, graph, x, shape)`` writes that module (its current weights,
    BatchNorm folded in eval-mode form) into ``graph`` after the tensor named ``x`` and
    returns its output's name. ``cost`` must describe the same nodes ``emit`` writes.
    """

    name: ClassVar[str]  #: the kind's name (``mbconv``)
    prefix: ClassVar[str]  #: the first part of its tokens (``mb``)
    genes: ClassVar[tuple[Gene, ...]] = ()
    summary: ClassVar[str] = ""

    def make(self, **values: Any) -> Block:
        """A block of this kind; SpaceError for an unknown, missing or disallowed value."""
        known = {gene.name for gene in self.genes}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpaceError(
                f"{self.name} has no gene {', '.join(unknown)} (genes: {self.gene_names()})"
            )
        checked: list[tuple[str, Any]] = []
        for gene in self.genes:
            if gene.name not in values and not isinstance(gene, FlagGene):
                raise SpaceError(f"{self.name} needs its gene '{gene.name}' ({gene.pattern()})")
            value = values.get(gene.name, False)
            checked.append((gene.name, gene.check(value)))
        return Block(self.name, tuple(checked))

    def gene_names(self) -> str:
        return ", ".join(gene.name for gene in self.genes) or "none"

    def pattern(self) -> str:
        """The token's form, for messages: ``pool_<max|avg>_k<1..64>_s<1..64>``."""
        out = self.prefix
        for gene in self.genes:
            text = gene.pattern()
            out += text if isinstance(gene, FlagGene) else f"_{text}"
        return out

    def encode(self, block: Block) -> str:
        if block.kind != self.name:
            raise SpaceError(f"a {block.kind} block is not a {self.name}")
        checked = self.make(**block.values)
        parts = [self.prefix]
        for gene in self.genes:
            parts += gene.parts(checked[gene.name])
        return "_".join(parts)

    def decode(self, token: str) -> Block:
        """The block ``token`` names; SpaceError naming the token for anything else."""
        head, *rest = token.split("_")
        if head != self.prefix:
            raise SpaceError(f"block '{token}' is not a {self.name} ({self.pattern()})")
        values: dict[str, Any] = {}
        at = 0
        for gene in self.genes:
            got = gene.read(rest[at] if at < len(rest) else None)
            if got is None:
                raise SpaceError(f"bad block '{token}': expected {self.pattern()}")
            values[gene.name], used = got
            at += used
        if at != len(rest):
            raise SpaceError(f"bad block '{token}': expected {self.pattern()}")
        try:
            block = self.make(**values)
        except SpaceError as exc:
            raise SpaceError(f"bad block '{token}': {exc}") from exc
        canonical = self.encode(block)
        if canonical != token:
            raise SpaceError(f"block '{token}' is not canonical: write it '{canonical}'")
        return block

    def table_ops(self, block: Block, shape: Shape) -> tuple[TableOp, ...]:
        """What the latency table measures for this block on an input of ``shape``: by
        default the whole block as one op (its nodes run as the full model runs them, the
        residual add and squeeze-excite included, as OFA's and MCUNet's tables keep blocks)."""
        return (TableOp(self.name, self.encode(block), tuple(shape)),)

    def prune_groups(self, block: Block, shape: Shape) -> tuple[PruneGroup, ...]:
        """The block's channel groups for structured pruning. By default one derived group
        over the whole module: a kind that says nothing is neither pruned nor has its input
        pruned (its module was built for that input width)."""
        width = self.output_shape(block, shape)[0]
        return (PruneGroup("output", width, ("",), derived=True, output=True),)

    def pruned(self, block: Block, module: Any, shape: Shape) -> Block:
        """The block a pruned ``module`` is (``shape``: the input it was built for, before
        pruning; its structure has not changed). Each gene group's width is read from its
        first module (``out_channels``, ``out_features`` or ``num_features``); SearchError
        where two groups of one gene were pruned to different widths (the encoding has one)."""
        widths: dict[str, int] = {}
        for group in self.prune_groups(block, shape):
            if group.gene is None or not group.modules or group.modules[0] == "":
                continue
            width = channels_of(module.get_submodule(group.modules[0]))
            if widths.setdefault(group.gene, width) != width:
                raise SearchError(
                    f"{self.encode(block)} pruned to {widths[group.gene]} and {width} "
                    f"channels for its one gene '{group.gene}'"
                )
        return self.make(**{**block.values, **widths})

    def supernet(self, slot: SupernetSlot) -> nn.Module | None:
        """The kind's supernet form (``search.blocks.supernet``): one module at the slot's
        largest sizes that runs every one of its choices with soft weights, for
        ``--strategy differentiable``. None: the kind has none (a stage of it is refused)."""
        return None

    @abstractmethod
    def output_shape(self, block: Block, shape: Shape) -> Shape:
        """The output shape for an input of ``shape``; InvalidCandidate where it does not
        work (a spatial size below 1, a feature block after a flatten)."""

    @abstractmethod
    def cost(self, block: Block, shape: Shape) -> BlockCost:
        """Params (BN folded), MACs and live elements per emitted node; no torch."""

    @abstractmethod
    def module(self, block: Block, shape: Shape) -> nn.Module:
        """The torch module, for training (BatchNorm in train mode folds at export)."""

    @abstractmethod
    def emit(
        self, block: Block, module: nn.Module, graph: GraphBuilder, x: str, shape: Shape
    ) -> str:
        """Write ``module`` into ``graph`` after tensor ``x``; the output tensor's name."""


def check_kind(kind: BlockKind) -> None:
    """SpaceError where a kind's definition could not round-trip its tokens."""
    for label, text in (("name", kind.name), ("prefix", kind.prefix)):
        if not isinstance(text, str) or not NAME.fullmatch(text):
            raise SpaceError(f"block kind {label} {text!r} must be lower-case letters and digits")
    names = [gene.name for gene in kind.genes]
    if len(set(names)) != len(names):
        raise SpaceError(f"block kind '{kind.name}' names a gene twice: {names}")
    words = [w for g in kind.genes for w in _words(g)]
    tags = [g.tag for g in kind.genes if isinstance(g, IntGene)]
    clashes = [
        w for w in words if any(w.startswith(t) and NUMBER.fullmatch(w[len(t) :]) for t in tags)
    ]
    if len(set(words)) != len(words) or len(set(tags)) != len(tags) or clashes:
        raise SpaceError(f"block kind '{kind.name}': its genes' tags and words are ambiguous")


def _words(gene: Gene) -> Sequence[str]:
    if isinstance(gene, WordGene):
        return gene.words
    if isinstance(gene, FlagGene):
        return (gene.word,)
    return ()


def expect(module: Any, cls: type[Any] | tuple[type[Any], ...], kind: str) -> Any:
    """``module`` when it is what ``kind``'s ``module()`` builds; SearchError otherwise."""
    if not isinstance(module, cls):
        raise SearchError(f"{kind} cannot emit a {type(module).__name__}: not the module it built")
    return module


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """The nearest multiple of ``divisor`` to ``value``, at least ``min_value`` (default
    ``divisor``) and never more than 10% below ``value``: MobileNet's ``_make_divisible``."""
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def channels_of(module: Any) -> int:
    """The output channels of a conv, linear or BatchNorm module."""
    for attr in ("out_channels", "out_features", "num_features"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    raise SearchError(f"{type(module).__name__} has no output channels to read")
