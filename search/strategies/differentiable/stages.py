"""The stage space (``search.blocks.stages``) as the differentiable search's positions.

:class:`StageMacro` lays the stage space out as positions of choices, in the order a
candidate is built:

1. ``input``: the input resolution and the width multiplier, one (r, m) pair (the
   resize, when r is not the data's size, and the stem conv are its table ops);
2. per stage ``i``: ``s<i>.width`` (one width for the stage), ``s<i>.depth``, then one
   position per block up to the stage's deepest, ``s<i>.b<j>``, whose choices are the
   products of the stage's per-block genes (kernel, expansion, se); a block at or beyond
   the depth chosen runs nothing (the "skip" of a depth below the stage's max);
3. ``head``: the hidden fc's units where the space has them (the head conv, the pooling,
   the fc and the classifier are its table ops).

A state is what the next position's cost depends on (the multiplier, the feature map's
shape, and within a stage its width and depth), so ``CostModel`` (supernet.py) carries the
exact distribution of states through the positions and E[latency] is exact: each block's
cost is the latency table's entry of that block on that input (``BlockKind.table_ops``).

:class:`StageSupernet` is the torch module: every block position is its kind's supernet
form (``BlockKind.supernet``, ``search.blocks.supernet``) at its largest sizes, masked to
the soft kernel, expansion and width choices; a stage's output is the depth-weighted sum
of its blocks' outputs (FBNetV2's depth mixture). The (resolution, multiplier) pair is
sampled hard each step (its Gumbel sample's largest, as GDAS does), the straight-through
factor ``w / w.detach()`` carrying the task loss's gradient to its α: a mixture over
resolutions would run the whole net once per resolution.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual torch spelling

from ...blocks.base import Block, BlockKind, Shape, SupernetSlot, TableOp, make_divisible
from ...blocks.layers import activation
from ...blocks.registry import kind_of
from ...blocks.table import RESIZE, chain_ops
from ...errors import InvalidCandidate, SettingsError
from ...space import Candidate, SearchSpace


@dataclass(frozen=True)
class State:
    """What the rest of a path's cost depends on."""

    multiplier: float
    shape: Shape
    width: int = 0  #: within a stage: its width
    depth: int = 0  #: within a stage: its depth


TERMINAL = State(0.0, ())


@dataclass(frozen=True)
class Slot:
    """One position: its role, its choices (values the genes take), where it is."""

    name: str
    role: str  #: input, width, depth, block or head
    choices: tuple[Any, ...]
    stage: int = -1
    index: int = -1  #: a block's index in its stage


class StageMacro:
    """The stage space's positions, their states and the candidate of a choice per position.

    Raises SettingsError for a stage whose kind has no supernet form.
    """

    def __init__(self, space: SearchSpace) -> None:
        stage_space = space.stage_space
        if stage_space is None or space.num_classes is None:
            raise SettingsError("the stage supernet needs a stage space and its classes")
        for i, spec in enumerate(stage_space.stages):
            if type(spec.block_kind()).supernet is BlockKind.supernet:
                raise SettingsError(
                    f"--strategy differentiable: stage {i}'s kind '{spec.kind}' has no "
                    "supernet form (conv, dwconv and mbconv have one): use evolution or random"
                )
        self.space, self.stage_space = space, stage_space
        self.num_classes = int(space.num_classes)
        *spatial, channels = space.input_shape
        self.data_shape: Shape = (int(channels), *(int(d) for d in spatial))
        resolutions: Sequence[int | None] = stage_space.resolutions or (None,)
        slots = [
            Slot(
                "input",
                "input",
                tuple(itertools.product(resolutions, stage_space.width_multipliers)),
            )
        ]
        for i, spec in enumerate(stage_space.stages):
            low, high = spec.depth
            slots.append(Slot(f"s{i}.width", "width", tuple(spec.widths), i))
            slots.append(Slot(f"s{i}.depth", "depth", tuple(range(low, high + 1)), i))
            genes = spec.choices()
            picks = tuple(
                dict(zip(genes, values, strict=True))
                for values in itertools.product(*genes.values())
            )
            slots += [Slot(f"s{i}.b{j}", "block", picks, i, j) for j in range(high)]
        slots.append(Slot("head", "head", tuple(stage_space.fc_units) or (None,)))
        self.positions = tuple(slots)
        self.states = self._reachable()
        self._genes: dict[str, dict[str, Any]] = {}

    # -- shapes and ops ---------------------------------------------------------------------

    def net_shape(self, resolution: int | None) -> Shape:
        channels, *spatial = self.data_shape
        if resolution is not None:
            spatial = [resolution] * len(spatial)
        return (channels, *spatial)

    def step_ops(self, state: State, slot: Slot, choice: Any) -> tuple[list[TableOp], State]:
        """The table ops ``choice`` runs after ``state``, and the state after it."""
        space = self.stage_space
        if slot.role == "input":
            resolution, multiplier = choice
            shape = self.net_shape(resolution)
            ops: list[TableOp] = []
            if shape != self.data_shape:
                ops.append(TableOp(RESIZE, f"resize_r{resolution}", self.data_shape))
            if space.stem is not None:
                block = space.stem.block(multiplier, space.act)
                ops += kind_of(block).table_ops(block, shape)
                shape = self._out(block, shape)
            return ops, State(multiplier, shape)
        if slot.role == "width":
            return [], State(state.multiplier, state.shape, space.scaled(choice, state.multiplier))
        if slot.role == "depth":
            return [], replace(state, depth=int(choice))
        if slot.role == "block":
            spec = space.stages[slot.stage]
            last = slot.index == spec.depth[1] - 1
            if slot.index >= state.depth:  # beyond the depth chosen: nothing runs
                return [], State(state.multiplier, state.shape) if last else state
            block = spec.block(slot.index, state.width, choice, space.act)
            ops = list(kind_of(block).table_ops(block, state.shape))
            shape = self._out(block, state.shape)
            nxt = State(state.multiplier, shape) if last else replace(state, shape=shape)
            return ops, nxt
        head = space.head(state.multiplier, choice)
        return list(chain_ops(head, state.shape, self.num_classes)), TERMINAL

    def final_ops(self, state: State) -> list[TableOp]:
        return []  # the classifier is the head's

    @staticmethod
    def _out(block: Block, shape: Shape) -> Shape:
        try:
            return kind_of(block).output_shape(block, shape)
        except InvalidCandidate as exc:
            raise SettingsError(f"the stage supernet cannot run {block.kind}: {exc}") from exc

    def _reachable(self) -> list[list[State]]:
        """The states each position may see, then the terminal one."""
        states = [[State(0.0, self.data_shape)]]
        for slot in self.positions:
            nxt: list[State] = []
            for state in states[-1]:
                for choice in slot.choices:
                    out = self.step_ops(state, slot, choice)[1]
                    if out not in nxt:
                        nxt.append(out)
            states.append(nxt)
        return states

    def layer_ops(self) -> list[TableOp]:
        """Every table op some architecture of the supernet runs."""
        ops: dict[str, TableOp] = {}
        for slot, inputs in zip(self.positions, self.states, strict=False):
            for state in inputs:
                for choice in slot.choices:
                    for op in self.step_ops(state, slot, choice)[0]:
                        ops.setdefault(op.key(), op)
        return [ops[key] for key in sorted(ops)]

    @property
    def architectures(self) -> int:
        return int(np.prod([len(p.choices) for p in self.positions]))

    # -- candidates and genes ---------------------------------------------------------------

    def gene_values(self, picks: Sequence[int]) -> dict[str, Any]:
        """The space's genes of one choice index per position (every gene named)."""
        genes: dict[str, Any] = {}
        for slot, pick in zip(self.positions, picks, strict=True):
            choice = slot.choices[pick]
            if slot.role == "input":
                resolution, multiplier = choice
                if self.stage_space.resolutions:
                    genes["resolution"] = resolution
                genes["width_mult"] = multiplier
            elif slot.role in ("width", "depth"):
                genes[slot.name] = choice
            elif slot.role == "block":
                genes.update({f"{slot.name}.{gene}": value for gene, value in choice.items()})
            elif choice is not None:
                genes["fc_units"] = choice
        return genes

    def candidate(self, picks: Sequence[int]) -> Candidate:
        genes = self.gene_values(picks)
        candidate = self.space.decode(genes)
        self._genes.setdefault(candidate.hash, genes)
        return candidate

    def genes(self, candidate: Candidate) -> dict[str, Any]:
        """The genes a derived ``candidate`` was decoded from."""
        genes = self._genes.get(candidate.hash)
        if genes is None:
            raise SettingsError(f"{candidate.encode()} was not derived by this supernet")
        return genes

    def supernet(self, *, seed: int = 0) -> nn.Module:
        return StageSupernet(self, seed=seed)


def _mask(width: int, size: int) -> torch.Tensor:
    out = torch.zeros(size)
    out[:width] = 1.0
    return out


class StageSupernet(nn.Module):
    """``forward(x, weights)``: logits for channels-first ``x`` (the data's size) under one
    weight vector per position of the macro (each summing to 1)."""

    def __init__(self, macro: StageMacro, *, seed: int = 0) -> None:
        super().__init__()
        self.macro = macro
        space = macro.stage_space
        dims = len(macro.data_shape) - 1
        self.dims = dims
        multipliers = space.width_multipliers
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            cin = macro.data_shape[0]
            self.stem: nn.Module | None = None
            if space.stem is not None:
                stem = space.stem
                widest = max(make_divisible(stem.width * m) for m in multipliers)
                slot = SupernetSlot(
                    dims,
                    cin,
                    widest,
                    stem.stride,
                    stem.act or space.act,
                    ({"kernel": stem.kernel},),
                )
                self.stem = cast(nn.Module, kind_of(stem.block(1.0, space.act)).supernet(slot))
                cin = self._stem_max = widest
            self._stage_max: list[int] = []
            self.blocks = nn.ModuleList()
            for i, spec in enumerate(space.stages):
                widest = max(space.scaled(w, m) for w in spec.widths for m in multipliers)
                self._stage_max.append(widest)
                picks = macro.positions[self._first_block(i)].choices
                kind = spec.block_kind()
                act = spec.act or space.act if "act" in {g.name for g in kind.genes} else None
                for j in range(spec.depth[1]):
                    stride = spec.stride if j == 0 else 1
                    slot = SupernetSlot(dims, cin if j == 0 else widest, widest, stride, act, picks)
                    self.blocks.append(cast(nn.Module, kind.supernet(slot)))
                cin = widest
            self.head_conv: nn.Module | None = None
            if space.head_width is not None:
                widest = max(make_divisible(space.head_width * max(1.0, m)) for m in multipliers)
                slot = SupernetSlot(dims, cin, widest, 1, space.act, ({"kernel": 1},))
                head = kind_of(space.head(1.0)[0])
                self.head_conv = cast(nn.Module, head.supernet(slot))
                cin = self._head_max = widest
            keys = ["0"] if space.pool else [str(k) for k in range(len(macro.positions[0].choices))]
            features = {key: cin * self._area(int(key)) for key in keys}
            units = max(space.fc_units) if space.fc_units else 0
            self.fc = nn.ModuleDict(
                {k: nn.Linear(f, units) for k, f in features.items()} if units else {}
            )
            self.fc_act = activation(space.act)
            self.classifier = nn.ModuleDict(
                {"0": nn.Linear(units, macro.num_classes)}
                if units
                else {k: nn.Linear(f, macro.num_classes) for k, f in features.items()}
            )
        self._units = units

    def _first_block(self, stage: int) -> int:
        return next(
            k
            for k, slot in enumerate(self.macro.positions)
            if slot.role == "block" and slot.stage == stage
        )

    def _area(self, input_index: int) -> int:
        """The last feature map's spatial size at input choice ``input_index`` (no pooling):
        the strides are fixed, so the first choices' path gives it."""
        if self.macro.stage_space.pool:
            return 1
        space = self.macro.stage_space
        resolution, multiplier = self.macro.positions[0].choices[input_index]
        shape = self.macro.net_shape(resolution)
        blocks = [] if space.stem is None else [space.stem.block(multiplier, space.act)]
        for spec in space.stages:
            width = space.scaled(spec.widths[0], multiplier)
            first = {gene: values[0] for gene, values in spec.choices().items()}
            blocks += [spec.block(j, width, first, space.act) for j in range(spec.depth[0])]
        for block in blocks:
            shape = StageMacro._out(block, shape)
        return math.prod(shape[1:])

    def forward(self, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        macro, space, dims = self.macro, self.macro.stage_space, self.dims
        w_in = weights[0]
        pick = int(torch.argmax(w_in.detach()))
        scale = w_in[pick] / w_in[pick].detach()  # 1, with the gradient to the input's α
        resolution, multiplier = macro.positions[0].choices[pick]
        if resolution is not None and tuple(x.shape[2:]) != (resolution,) * dims:
            x = F.interpolate(x, size=(resolution,) * dims, mode="nearest")
        one = torch.ones(1)
        mask = torch.ones(x.shape[1])
        widths: dict[int, torch.Tensor] = {x.shape[1]: torch.ones(())}
        if self.stem is not None and space.stem is not None:
            width = make_divisible(space.stem.width * multiplier)
            out_mask = _mask(width, self._stem_max)
            x = self.stem(x, mask, one, out_mask)
            mask, widths = out_mask, {width: torch.ones(())}
        at, block = 1, 0
        for i, spec in enumerate(space.stages):
            g_width, g_depth = weights[at], weights[at + 1]
            at += 2
            widest = self._stage_max[i]
            stage_mask = torch.zeros(widest)
            stage_widths: dict[int, torch.Tensor] = {}
            for a, w in enumerate(spec.widths):
                width = space.scaled(w, multiplier)
                stage_mask = stage_mask + g_width[a] * _mask(width, widest)
                stage_widths[width] = stage_widths.get(width, torch.zeros(())) + g_width[a]
            same = sum(
                (p * widths[c] for c, p in stage_widths.items() if c in widths), torch.zeros(())
            )
            low = spec.depth[0]
            out = torch.zeros(())
            for j in range(spec.depth[1]):
                module = self.blocks[block]
                residual = same if j == 0 else torch.ones(())
                x = module(x, mask if j == 0 else stage_mask, weights[at], stage_mask, residual)
                if j + 1 >= low:
                    out = out + g_depth[j + 1 - low] * x
                at, block = at + 1, block + 1
            x, mask, widths = out, stage_mask, stage_widths
        if self.head_conv is not None and space.head_width is not None:
            width = make_divisible(space.head_width * max(1.0, multiplier))
            head_mask = _mask(width, self._head_max)
            x = self.head_conv(x, mask, one, head_mask)
        key = "0"
        if space.pool:
            x = x.mean(dim=tuple(range(2, x.dim())))
        else:
            key = str(pick)
        flat = x.flatten(1)
        if self._units:
            g_head = weights[at]
            unit_mask = sum(
                (g_head[u] * _mask(units, self._units) for u, units in enumerate(space.fc_units)),
                torch.zeros(self._units),
            )
            hidden = self.fc_act(self.fc[key](flat)) * unit_mask[None, :]
            logits: torch.Tensor = self.classifier["0"](hidden)
        else:
            logits = self.classifier[key](flat)
        return logits * scale


__all__ = ["Slot", "StageMacro", "StageSupernet", "State"]
