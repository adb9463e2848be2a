"""Structured pruning that removes channels physically, with Torch-Pruning (DepGraph).

Torch-Pruning traces the module once, finds which layers' channels depend on each other
(a conv's filters, the next conv's input channels, a depthwise conv's groups, the
Flatten -> Linear columns) and cuts them together, so the pruned module is smaller, not
masked. The pruned widths are then written back into a :class:`Candidate` and the weights
loaded into a fresh ``build(candidate)``: the ONNX export (``to_onnx``) and the candidate
encoding in its metadata stay true to the pruned architecture.

A block net (``BlockCandidateNet``) is pruned the same way, its groups said by its blocks
(``search.blocks.pruning``): the channels an identity residual add joins are cut together,
what no gene could say once pruned (mbconv's expanded and squeeze widths, and the input
they are computed from) and the classifier's outputs stay, and the pruned blocks are read
back into the candidate's encoding. A block net read back from its ONNX file (BatchNorm
folded: ``SearchedModel.module``, ``hwnas compress``) is unfolded into one first (unfold.py).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..build import CandidateNet, FlatNet, build
from ..errors import SearchError, SettingsError
from ..space import Candidate
from ..training.data import Split
from ..training.train import TrainSettings, torch_threads, train
from .errors import CompressionError

if TYPE_CHECKING:
    from ..blocks.candidate_net import BlockCandidateNet

IMPORTANCES = ("l1", "taylor")
#: samples whose loss gradient scores the channels for ``importance="taylor"``
TAYLOR_SAMPLES = 256


def prunable_widths(candidate: Candidate) -> int:
    """How many layers (a block candidate: channel groups) pruning may cut."""
    from ..blocks.candidate import BlockCandidate
    from ..blocks.pruning import prunable_groups

    if isinstance(candidate, BlockCandidate):
        return len(prunable_groups(candidate.blocks, candidate.net_shape))
    return sum(1 for layer in candidate.layers if layer.kind in ("conv", "dwconv", "fc"))


def _torch_pruning() -> Any:
    """Torch-Pruning, imported when first needed, with the install hint if it is missing."""
    try:
        import torch_pruning  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        raise CompressionError(
            f"pruning needs Torch-Pruning: pip install 'torch-pruning>=1.6' ({exc})"
        ) from exc
    return torch_pruning


def _importance(kind: str) -> object:
    tp = _torch_pruning()
    if kind == "l1":
        return tp.importance.MagnitudeImportance(p=1)  # sum |w| of each channel's group
    if kind == "taylor":
        return tp.importance.TaylorImportance()  # |w * dL/dw|, first-order Taylor
    raise SettingsError(f"unknown pruning importance '{kind}' (known: {', '.join(IMPORTANCES)})")


def _score_gradients(net: nn.Module, data: Split, seed: int) -> None:
    """Fill ``.grad`` with the loss gradient over a few training samples (Taylor scores)."""
    n = min(TAYLOR_SAMPLES, len(data.x_train))
    idx = np.random.default_rng(seed).choice(len(data.x_train), n, replace=False)
    net.zero_grad()
    loss = nn.functional.cross_entropy(
        net(torch.from_numpy(data.x_train[idx])), torch.from_numpy(data.y_train[idx])
    )
    loss.backward()  # type: ignore[no-untyped-call]


def pruned_candidate(candidate: Candidate, body: nn.Sequential) -> Candidate:
    """The candidate with the widths the pruned ``body`` has (walked as build.py lays it)."""
    modules = list(body)
    layers = []
    i = 0
    for layer in candidate.layers:
        if layer.kind == "conv":
            conv = modules[i]
            assert isinstance(conv, nn.Conv2d)
            layers.append(replace(layer, width=conv.out_channels))
            i += 2  # conv, relu
        elif layer.kind == "dwconv":
            point = modules[i + 2]
            assert isinstance(point, nn.Conv2d)
            layers.append(replace(layer, width=point.out_channels))
            i += 4  # depthwise, relu, pointwise, relu
        elif layer.kind == "pool":
            layers.append(layer)
            i += 1
        else:  # fc, after a Flatten that build.py inserts before the first one
            if isinstance(modules[i], nn.Flatten):
                i += 1
            linear = modules[i]
            assert isinstance(linear, nn.Linear)
            layers.append(replace(layer, width=linear.out_features))
            i += 2  # linear, relu
    return replace(candidate, layers=tuple(layers))


def prune(
    net: CandidateNet,
    ratio: float,
    *,
    importance: str = "l1",
    data: Split | None = None,
    seed: int = 0,
) -> CandidateNet:
    """A new module with ``ratio`` of each layer's channels removed (the classifier's outputs
    kept); ``net`` is left as it was. ``importance="taylor"`` needs ``data``. A block net
    loses ``ratio`` of each prunable channel group (:func:`search.blocks.net_groups`); one
    read back from its ONNX file is unfolded first (:func:`search.compress.unfold.unfold`,
    its BatchNorm statistics from ``data``'s training part)."""
    from ..blocks.candidate_net import BlockCandidateNet, OnnxBlockNet

    if not 0.0 < ratio < 1.0:
        raise SettingsError(f"a pruning ratio must be in (0, 1), got {ratio}")
    if importance == "taylor" and data is None:
        raise SettingsError("taylor importance needs training data for its gradients")
    if isinstance(net, OnnxBlockNet):  # read back from its file (hwnas compress): unfold
        from .unfold import unfold

        net = unfold(net, None if data is None else data.x_train, seed=seed)
    if isinstance(net, BlockCandidateNet):
        return _prune_blocks(net, ratio, importance=importance, data=data, seed=seed)
    if not isinstance(net, FlatNet):
        raise CompressionError(f"{net.candidate.encode()}: no pruning for a {type(net).__name__}")
    tp = _torch_pruning()
    work = copy.deepcopy(net)
    work.eval()
    h, w, c = net.candidate.input_shape
    example = torch.zeros(1, c, h, w)
    classifier = work.body[len(work.body) - 1]
    with torch_threads(1):
        pruner = tp.pruner.BasePruner(
            work,
            example,
            importance=_importance(importance),
            pruning_ratio=ratio,
            ignored_layers=[classifier],
        )
        if importance == "taylor":
            assert data is not None
            _score_gradients(work, data, seed)
        pruner.step()
    candidate = pruned_candidate(net.candidate, work.body)
    fresh = build(candidate, seed=seed)
    try:
        fresh.load_state_dict(work.state_dict())
    except RuntimeError as exc:  # a width the walk above got wrong: a bug, said plainly
        raise CompressionError(f"pruned weights do not fit {candidate.encode()}: {exc}") from exc
    return fresh


def _prune_blocks(
    net: BlockCandidateNet, ratio: float, *, importance: str, data: Split | None, seed: int
) -> CandidateNet:
    """:func:`prune` for a block net: Torch-Pruning's graph over the blocks, the groups
    that stay as its ignored layers, the pruned blocks read back into a fresh net."""
    from ..blocks.pruning import check_ratio_leaves_channels, frozen_modules, pruned_blocks

    candidate = net.block_candidate
    try:
        check_ratio_leaves_channels(candidate.blocks, candidate.net_shape, ratio)
    except SearchError as exc:
        raise CompressionError(f"{candidate.encode()}: {exc}") from exc
    tp = _torch_pruning()
    work = copy.deepcopy(net)
    work.eval()
    example = torch.zeros(1, *candidate.net_shape)
    with torch_threads(1):
        pruner = tp.pruner.BasePruner(
            work.net,
            example,
            importance=_importance(importance),
            pruning_ratio=ratio,
            ignored_layers=frozen_modules(work.net),
        )
        if importance == "taylor":
            assert data is not None
            _score_gradients(work, data, seed)
        pruner.step()
    try:
        blocks = pruned_blocks(work.net)
        pruned = replace(candidate, blocks=blocks)
        pruned.shapes()  # InvalidCandidate for widths no block takes: a bug, said below
        fresh = build(pruned, seed=seed)
        fresh.load_state_dict(work.state_dict())
    except (SearchError, RuntimeError) as exc:  # a group Torch-Pruning cut unlike ours
        raise CompressionError(f"pruned weights do not fit {candidate.encode()}: {exc}") from exc
    return fresh


def fine_tune(net: CandidateNet, data: Split, *, epochs: int, lr: float, seed: int) -> float:
    """Train the pruned module a little (in place); returns its validation accuracy."""
    settings = TrainSettings(optimizer="adam", lr=lr, epochs=epochs, batch_size=64, seed=seed)
    return train(net, data, settings).val_accuracy


def channel_count(net: CandidateNet) -> int:
    """Output channels + units of every layer but the classifier (what pruning shrinks);
    a block net read back from ONNX is counted on a fresh net of its candidate."""
    from ..blocks.candidate_net import OnnxBlockNet

    if isinstance(net, OnnxBlockNet):
        net = build(net.candidate)
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    body = layers[:-1]  # the last is the classifier, which keeps its outputs
    return sum(m.out_channels for m in body if not isinstance(m, nn.Linear)) + sum(
        m.out_features for m in body if isinstance(m, nn.Linear)
    )
