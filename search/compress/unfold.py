"""A block net back from its ONNX bytes as a trainable module, BatchNorm unfolded.

The export folds each BatchNorm into the conv before it, so the bytes hold one weight and
one bias per conv. To prune and fine-tune such a file (``hwnas compress`` on a searched
block model), :func:`unfold` builds the candidate's ``BlockCandidateNet``, loads each folded
weight into its conv and gives its BatchNorm the statistics the conv's output has on the
training data, with the affine map that undoes them: ``gamma = sqrt(var + eps)``, ``beta =
mean + bias``. In eval mode the module then computes exactly what the bytes do; in train
mode the batch statistics are close to those, so fine-tuning starts where the file is.

Which initializer belongs to which module is found by exporting the fresh net with every
weight set to its module's number: the emission is the same for one candidate, so the
initializers line up by position, and the unfolded module is checked against the bytes.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from ..blocks.candidate_net import BlockCandidateNet, OnnxBlockNet, block_model
from ..blocks.layers import ConvBN
from .errors import CompressionError

#: training samples whose conv outputs give the unfolded BatchNorm its statistics
STATISTICS_SAMPLES = 512
#: the largest difference in logits allowed between the unfolded module and the bytes
TOLERANCE = 1e-4

Weighted = nn.Conv1d | nn.Conv2d | nn.Linear


def _weighted(net: nn.Module) -> list[tuple[Weighted, nn.BatchNorm1d | nn.BatchNorm2d | None]]:
    """Every conv and linear layer with the BatchNorm folded into it (None: none)."""
    out: list[tuple[Weighted, nn.BatchNorm1d | nn.BatchNorm2d | None]] = []
    in_conv_bn: set[int] = set()
    for module in net.modules():
        if isinstance(module, ConvBN):
            out.append((module.conv, module.bn))
            in_conv_bn.add(id(module.conv))
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)) and id(module) not in in_conv_bn:
            out.append((module, None))
    return out


def _neutral(bn: nn.BatchNorm1d | nn.BatchNorm2d, bias: torch.Tensor) -> None:
    """``bn(x) == x + bias`` in eval mode."""
    assert bn.running_mean is not None
    assert bn.running_var is not None
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0)
    bn.weight.copy_(torch.full_like(bn.weight, (1.0 + bn.eps) ** 0.5))
    bn.bias.copy_(bias)


def _initializer_owners(net: BlockCandidateNet) -> tuple[list[str], dict[int, int]]:
    """The fresh net's initializer names in order, and for each conv or linear layer (by
    its place in ``_weighted``) the index of its weight initializer (its bias follows)."""
    layers = _weighted(net)
    with torch.no_grad():
        for number, (layer, bn) in enumerate(layers, start=1):
            layer.weight.fill_(float(number))
            if layer.bias is not None:
                layer.bias.zero_()
            if bn is not None:
                _neutral(bn, torch.zeros_like(bn.bias))
    inits = list(block_model(net).graph.initializer)
    owners: dict[int, int] = {}
    for index, tensor in enumerate(inits):
        values = numpy_helper.to_array(tensor)
        if values.ndim < 2:  # biases, scalar constants, the resize's sizes
            continue
        number = round(float(values.flat[0]))
        if (
            1 <= number <= len(layers)
            and values.shape == tuple(layers[number - 1][0].weight.shape)
            and np.allclose(values, number, rtol=1e-4)
        ):
            owners[number - 1] = index
    if len(owners) != len(layers):
        raise CompressionError(f"{net.candidate.encode()}: its layers' weights were not all found")
    return [t.name for t in inits], owners


def _bn_inputs(net: BlockCandidateNet, x: torch.Tensor) -> dict[int, torch.Tensor]:
    """Each BatchNorm's input channel means and variances on ``x`` (eval mode)."""
    stats: dict[int, torch.Tensor] = {}
    hooks = []
    for module in net.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):

            def record(m: nn.Module, args: tuple[torch.Tensor, ...], key: int = id(module)) -> None:
                dims = [0, *range(2, args[0].dim())]
                stats[key] = torch.stack(
                    [args[0].mean(dim=dims), args[0].var(dim=dims, unbiased=False)]
                )

            hooks.append(module.register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            net.eval()(x)
    finally:
        for hook in hooks:
            hook.remove()
    return stats


def unfold(
    net: OnnxBlockNet, x_train: np.ndarray | None = None, *, seed: int = 0
) -> BlockCandidateNet:
    """A trainable ``BlockCandidateNet`` computing what ``net``'s bytes compute; its
    BatchNorm statistics from up to ``STATISTICS_SAMPLES`` of ``x_train`` (none given: the
    identity's). CompressionError where the bytes are not the graph the candidate exports."""
    candidate = net.block_candidate
    fresh = BlockCandidateNet(candidate, seed=seed)
    names, owners = _initializer_owners(fresh)
    given = list(onnx.load_from_string(net.onnx).graph.initializer)
    if [t.name for t in given] != names:
        raise CompressionError(
            f"{candidate.encode()}: the file's graph is not the one this candidate exports"
        )
    layers = _weighted(fresh)
    with torch.no_grad():
        for place, (layer, bn) in enumerate(layers):
            index = owners[place]
            weight = torch.from_numpy(numpy_helper.to_array(given[index]).copy())
            bias = torch.from_numpy(numpy_helper.to_array(given[index + 1]).copy())
            if weight.shape != layer.weight.shape:
                raise CompressionError(f"{candidate.encode()}: a weight of the wrong shape")
            layer.weight.copy_(weight)
            if bn is None:
                assert layer.bias is not None
                layer.bias.copy_(bias)
            else:
                _neutral(bn, bias)
        if x_train is not None and len(x_train):
            n = min(STATISTICS_SAMPLES, len(x_train))
            idx = np.random.default_rng(seed).choice(len(x_train), n, replace=False)
            stats = _bn_inputs(fresh, torch.from_numpy(np.asarray(x_train[idx], np.float32)))
            for _, bn in layers:
                if bn is None:
                    continue
                mean, var = stats[id(bn)]
                assert bn.running_mean is not None
                assert bn.running_var is not None
                bias = bn.bias.clone()  # the folded bias: bn(x) == x + bias so far
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
                bn.weight.copy_(torch.sqrt(var + bn.eps))
                bn.bias.copy_(mean + bias)
    _check_same(fresh, net)
    return fresh.eval()


def _check_same(fresh: BlockCandidateNet, net: OnnxBlockNet) -> None:
    probe = torch.from_numpy(
        np.random.default_rng(0).standard_normal((2, *net.block_candidate.data_shape), np.float32)
    )
    with torch.no_grad():
        diff = float((fresh.eval()(probe) - net(probe)).abs().max())
    if not diff <= TOLERANCE:
        raise CompressionError(
            f"{net.candidate.encode()}: the unfolded module differs from the file by {diff:.3g}"
        )
