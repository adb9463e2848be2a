"""The supernet of ``--strategy differentiable``: positions of mixed operations over a space.

Macro-structure (:class:`Macro`): ``D = space.depth_range[1]`` positions. Each *feature*
position chooses one of the space's conv/dwconv types x (odd) conv kernels x conv channels,
or ``skip`` (identity) where the depth may shrink; all its ops use the space's smallest
conv stride, so every op of a position gives the same spatial size. Pooling and strides are
not searched. With ``fc`` in the layer types (and ``D >= 2``) the last position is an *fc*
position instead: one of ``fc_sizes``, or ``skip``. The classifier to ``num_classes`` is
always appended, as in the candidates.

The torch module (:class:`Supernet`) keeps every feature map at the largest width and masks
the channels an op does not have (FBNetV2): one conv per (type, kernel) and position serves
all its widths, and a mixed op costs one conv per (type, kernel), not one per choice. Each
branch normalises its output with batch statistics (the candidates have no BN; the
supernet needs it, see ``_Branch``).

:class:`CostModel` holds one figure (ms from the lookup table, or mJ) per layer op the
supernet can produce, arranged per position as (input state x choice) matrices, so the
expectation under the factorised architecture distribution is exact and differentiable:
the distribution of the current input shape (its channel count) is carried through the
positions, ``P_next(s') = sum_{s, op: op(s) = s'} P(s) p(op)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual torch spelling

from ...errors import SettingsError
from ...predict.ops import LayerOp, Op
from ...space import Candidate, Layer, SearchSpace, Shape, conv_out

SKIP = "skip"


class Positions(Protocol):
    """What the search needs of a supernet's layout: :class:`Macro` (the flat space) and
    ``stages.StageMacro`` (the stage space). ``states[i]`` are the states position ``i``
    may see (``states[-1]``: those after the last); ``step_ops`` the table ops a choice
    runs after a state, and the state after it; ``final_ops`` those after the last."""

    @property
    def positions(self) -> Sequence[Any]: ...

    @property
    def states(self) -> Sequence[Sequence[Any]]: ...

    @property
    def architectures(self) -> int: ...

    def step_ops(self, state: Any, position: Any, choice: Any) -> tuple[list[Any], Any]: ...

    def final_ops(self, state: Any) -> list[Any]: ...

    def layer_ops(self) -> Sequence[Op]: ...

    def candidate(self, picks: Sequence[int]) -> Candidate: ...

    def genes(self, candidate: Candidate) -> dict[str, Any]: ...

    def supernet(self, *, seed: int = 0) -> nn.Module: ...


@dataclass(frozen=True)
class Choice:
    """One operation a position may take."""

    kind: str  #: conv, dwconv, fc or skip
    kernel: int = 0
    width: int = 0  #: output channels (conv, dwconv) or units (fc)

    def label(self) -> str:
        if self.kind == SKIP:
            return SKIP
        if self.kind == "fc":
            return f"fc_u{self.width}"
        return f"{'dw' if self.kind == 'dwconv' else 'conv'}_k{self.kernel}_c{self.width}"


@dataclass(frozen=True)
class Position:
    role: str  #: "feature" or "fc"
    choices: tuple[Choice, ...]
    stride: int = 0  #: feature positions

    @property
    def skip_index(self) -> int | None:
        kinds = [c.kind for c in self.choices]
        return kinds.index(SKIP) if SKIP in kinds else None


class Macro:
    """The positions, their choices, and the candidate (and genes) of a choice per position.

    Raises SettingsError for a space this strategy cannot search (no conv/dwconv type, no
    odd kernel).
    """

    def __init__(self, space: SearchSpace) -> None:
        if space.num_classes is None:
            raise SettingsError("the supernet needs the number of classes")
        types = tuple(space.layer_types)
        convs = [t for t in ("conv", "dwconv") if t in types]
        if not convs:
            raise SettingsError(
                "--strategy differentiable searches conv/dwconv layers; layer_types "
                f"{list(types)} hold neither"
            )
        kernels = [k for k in space.conv_kernels if k % 2 == 1]
        if not kernels:
            raise SettingsError(
                "--strategy differentiable needs an odd conv kernel (an even kernel changes "
                f"the spatial size); conv_kernels are {list(space.conv_kernels)}"
            )
        self.space = space
        self.num_classes = int(space.num_classes)
        lo, hi = space.depth_range
        self.stride = min(space.conv_strides)
        h, w, c = space.hwc
        self.input_state: Shape = (c, h, w)
        fc_position = "fc" in types and hi >= 2
        positions: list[Position] = []
        for i in range(hi):
            # without a skip type the first `lo` positions are mandatory: depth >= lo
            optional = SKIP in types or i >= lo
            skip = (Choice(SKIP),) if optional else ()
            if fc_position and i == hi - 1:
                fcs = tuple(Choice("fc", width=u) for u in space.fc_sizes)
                positions.append(Position("fc", fcs + skip))
                continue
            ops = tuple(
                Choice(kind, k, width)
                for kind in convs
                for k in kernels
                for width in space.conv_channels
            )
            # a strided skip would change the spatial size: no skip at a strided position
            skip = skip if self.stride == 1 else ()
            positions.append(Position("feature", ops + skip, self.stride))
        self.positions = tuple(positions)
        self.max_channels = max(c, *space.conv_channels)
        self.max_units = max(space.fc_sizes) if fc_position else 0
        self.states = self._reachable()

    # -- shapes and ops ---------------------------------------------------------------------

    def step(
        self, state: Shape, position: Position, choice: Choice
    ) -> tuple[LayerOp | None, Shape]:
        """The layer op ``choice`` runs on an input of shape ``state``, and its output shape."""
        if choice.kind == SKIP:
            return None, state
        if choice.kind == "fc":
            return LayerOp("fc", state, width=choice.width), (choice.width,)
        _, h, w = state
        s, k = position.stride, choice.kernel
        op = LayerOp(choice.kind, state, k, s, choice.width)
        return op, (choice.width, conv_out(h, k, s), conv_out(w, k, s))

    def classifier(self, state: Shape) -> LayerOp:
        return LayerOp("classifier", state, width=self.num_classes)

    def step_ops(
        self, state: Shape, position: Position, choice: Choice
    ) -> tuple[list[LayerOp], Shape]:
        op, out = self.step(state, position, choice)
        return ([] if op is None else [op]), out

    def final_ops(self, state: Shape) -> list[LayerOp]:
        return [self.classifier(state)]

    def supernet(self, *, seed: int = 0) -> nn.Module:
        return Supernet(self, seed=seed)

    def _reachable(self) -> list[list[Shape]]:
        """The input shapes each position may see, then those the classifier may see."""
        states = [[self.input_state]]
        for position in self.positions:
            nxt: list[Shape] = []
            for state in states[-1]:
                for choice in position.choices:
                    out = self.step(state, position, choice)[1]
                    if out not in nxt:
                        nxt.append(out)
            states.append(sorted(nxt))
        return states

    def layer_ops(self) -> list[LayerOp]:
        """Every layer op (classifiers included) some architecture of the supernet runs."""
        ops: set[LayerOp] = set()
        for position, inputs in zip(self.positions, self.states, strict=False):
            for state in inputs:
                for choice in position.choices:
                    op = self.step(state, position, choice)[0]
                    if op is not None:
                        ops.add(op)
        ops.update(self.classifier(s) for s in self.states[-1])
        return sorted(ops, key=LayerOp.key)

    @property
    def architectures(self) -> int:
        return int(np.prod([len(p.choices) for p in self.positions]))

    # -- candidates and genes ---------------------------------------------------------------

    def candidate(self, picks: Sequence[int]) -> Candidate:
        """The architecture of one choice index per position."""
        features: list[Layer] = []
        head: list[Layer] = []
        for position, pick in zip(self.positions, picks, strict=True):
            choice = position.choices[pick]
            if choice.kind == "fc":
                head.append(Layer("fc", width=choice.width))
            elif choice.kind != SKIP:
                features.append(Layer(choice.kind, choice.kernel, position.stride, choice.width))
        h, w, c = self.space.hwc
        return Candidate((h, w, c), tuple(features + head), self.num_classes)

    def genes(self, candidate: Candidate) -> dict[str, Any]:
        """The space's genes that decode to ``candidate``; unused genes take their first
        choice. Raises SettingsError if the space cannot express it (a bug here)."""
        space = self.space
        genes = {name: choices[0] for name, choices in space.genes.items()}
        layers = candidate.layers
        lo, hi = space.depth_range
        depth = max(len(layers), lo) if "depth" in genes else hi
        if "depth" in genes:
            genes["depth"] = depth
        for i in range(depth):
            if i >= len(layers):
                genes[f"l{i}_type"] = SKIP
                continue
            layer = layers[i]
            genes[f"l{i}_type"] = layer.kind
            if layer.kind == "fc":
                genes[f"l{i}_units"] = layer.width
            else:
                genes[f"l{i}_kernel"] = layer.kernel
                genes[f"l{i}_stride"] = layer.stride
                genes[f"l{i}_channels"] = layer.width
        decoded = space.decode(genes).encode() if _known(space, genes) else None
        if decoded != candidate.encode():
            raise SettingsError(f"the space cannot express {candidate.encode()} (genes {genes})")
        return genes


def _known(space: SearchSpace, genes: dict[str, Any]) -> bool:
    return all(genes[name] in choices for name, choices in space.genes.items())


class CostModel:
    """A per-op figure arranged for exact expectations: per position a (state x choice)
    cost matrix and next-state index, then the classifier's cost per final state."""

    def __init__(self, macro: Positions, per_op: Callable[[Any], float], constant: float) -> None:
        self.constant = float(constant)
        self.costs: list[np.ndarray] = []
        self.next: list[np.ndarray] = []
        self._sizes = [len(states) for states in macro.states[1:]]
        for i, position in enumerate(macro.positions):
            inputs, outputs = macro.states[i], list(macro.states[i + 1])
            cost = np.zeros((len(inputs), len(position.choices)))
            nxt = np.zeros((len(inputs), len(position.choices)), dtype=np.int64)
            for s, state in enumerate(inputs):
                for j, choice in enumerate(position.choices):
                    ops, out = macro.step_ops(state, position, choice)
                    cost[s, j] = sum(per_op(op) for op in ops)
                    nxt[s, j] = outputs.index(out)
            self.costs.append(cost)
            self.next.append(nxt)
        self.classifier = np.array(
            [sum(per_op(op) for op in macro.final_ops(s)) for s in macro.states[-1]], dtype=float
        )
        self._costs_t = [torch.from_numpy(c).float() for c in self.costs]
        self._next_t = [torch.from_numpy(n).reshape(-1) for n in self.next]
        self._classifier_t = torch.from_numpy(self.classifier).float()

    def expectation(self, probs: Sequence[torch.Tensor]) -> torch.Tensor:
        """E[figure] under independent per-position choice probabilities (differentiable)."""
        dist = torch.ones(1)
        total = torch.tensor(self.constant)
        for cost, nxt, size, p in zip(self._costs_t, self._next_t, self._sizes, probs, strict=True):
            joint = dist[:, None] * p[None, :]  # P(state, choice)
            total = total + (joint * cost).sum()
            dist = torch.zeros(size).index_add(0, nxt, joint.reshape(-1))
        return total + (dist * self._classifier_t).sum()

    def of(self, picks: Sequence[int]) -> float:
        """The figure of one architecture (what the table predicts for it)."""
        state, total = 0, self.constant
        for cost, nxt, j in zip(self.costs, self.next, picks, strict=True):
            total += float(cost[state, j])
            state = int(nxt[state, j])
        return total + float(self.classifier[state])


def gumbel_softmax(alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """A relaxed one-hot sample of ``softmax(alpha)`` at temperature ``tau`` (seeded)."""
    u = torch.rand(alpha.shape, generator=generator).clamp(1e-9, 1.0 - 1e-9)
    return torch.softmax((alpha - torch.log(-torch.log(u))) / tau, dim=-1)


def _norm(channels: int) -> nn.BatchNorm2d:
    """Batch statistics always (no running averages: they would mix architectures)."""
    return nn.BatchNorm2d(channels, track_running_stats=False)


class _Branch(nn.Module):
    """conv + BN + ReLU, or depthwise kxk + BN + ReLU + pointwise + BN + ReLU, at the
    largest width. The supernet normalises where the candidates do not: its convs see the
    largest width's fan-in while most choices use a few channels, and without it the
    signal of a narrow path fades to nothing (the supernet then does not learn at all)."""

    def __init__(self, kind: str, kernel: int, stride: int, channels: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "conv":
            self.conv = nn.Conv2d(channels, channels, kernel, stride, kernel // 2)
        else:
            self.depthwise = nn.Conv2d(
                channels, channels, kernel, stride, kernel // 2, groups=channels
            )
            self.pointwise = nn.Conv2d(channels, channels, 1)
            self.norm_dw = _norm(channels)
        self.norm = _norm(channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "conv":
            return torch.relu(self.norm(self.conv(x)))
        # channels the input does not have would pass their bias on: masked
        inner = torch.relu(self.norm_dw(self.depthwise(x))) * mask[None, :, None, None]
        return torch.relu(self.norm(self.pointwise(inner)))


class Supernet(nn.Module):
    """``forward(x, weights)``: logits for NCHW ``x`` under per-position choice weights
    (one vector per position, each summing to 1: a Gumbel-softmax sample or one-hot)."""

    def __init__(self, macro: Macro, *, seed: int = 0) -> None:
        super().__init__()
        self.macro = macro
        width = macro.max_channels
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.branches = nn.ModuleList()
            # per position: (branch name, the choices it serves) for each (type, kernel)
            groups: list[list[tuple[str, list[int]]]] = []
            for position in macro.positions:
                keys: dict[tuple[str, int], list[int]] = {}
                for j, choice in enumerate(position.choices):
                    if choice.kind in ("conv", "dwconv"):
                        keys.setdefault((choice.kind, choice.kernel), []).append(j)
                groups.append([(f"{k}{n}", sel) for (k, n), sel in keys.items()])
                self.branches.append(
                    nn.ModuleDict(
                        {f"{k}{n}": _Branch(k, n, position.stride, width) for k, n in keys}
                    )
                )
            _, h, w = macro.states[-1][0] if macro.max_units == 0 else _last_map(macro)
            flat = width * h * w
            self.head_map = nn.Linear(flat, macro.num_classes)
            if macro.max_units:
                self.fc = nn.Linear(flat, macro.max_units)
                self.head_fc = nn.Linear(macro.max_units, macro.num_classes)
        self._groups = groups
        for i, position in enumerate(macro.positions):
            size = width if position.role == "feature" else macro.max_units
            masks = torch.zeros(len(position.choices), size)
            for j, choice in enumerate(position.choices):
                masks[j, : choice.width] = 1.0
            self.register_buffer(f"masks{i}", masks)
        self._input_channels = macro.input_state[0]

    def forward(self, x: torch.Tensor, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        width = self.macro.max_channels
        x = F.pad(x, (0, 0, 0, 0, 0, width - self._input_channels))
        mask = torch.zeros(width)
        mask[: self._input_channels] = 1.0
        for i, position in enumerate(self.macro.positions):
            w = weights[i]
            masks: torch.Tensor = getattr(self, f"masks{i}")
            skip = position.skip_index
            if position.role == "fc":
                return self._head(x, w, masks, skip)
            out = x * w[skip] if skip is not None else torch.zeros(())
            branches = cast(nn.ModuleDict, self.branches[i])
            for name, sel in self._groups[i]:
                channel_weight = w[sel] @ masks[sel]  # E[mask] over this branch's widths
                out = out + branches[name](x, mask) * channel_weight[None, :, None, None]
            mask = w @ masks + (w[skip] * mask if skip is not None else 0.0)
            x = out
        out_map: torch.Tensor = self.head_map(x.flatten(1))
        return out_map

    def _head(
        self, x: torch.Tensor, w: torch.Tensor, masks: torch.Tensor, skip: int | None
    ) -> torch.Tensor:
        flat = x.flatten(1)
        hidden = torch.relu(self.fc(flat)) * (w @ masks)[None, :]
        p_fc = 1.0 - w[skip] if skip is not None else w.sum()
        logits = F.linear(hidden, self.head_fc.weight) + p_fc * self.head_fc.bias
        if skip is not None:
            logits = logits + w[skip] * self.head_map(flat)
        return logits


def _last_map(macro: Macro) -> Shape:
    """The feature-map shape the fc position receives (spatial size fixed per position)."""
    return macro.states[-2][0]
