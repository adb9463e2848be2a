"""Train a candidate's module on CPU: seeded, deterministic, small budgets."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import SettingsError
from .augment import augment
from .data import Split
from .settings import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_LR,
    MAX_SEED,
    MAX_THREADS,
    OPTIMIZERS,
    TrainSettings,
    check_int,
    check_number,
    is_int,
    is_number,
)

#: the settings' names, imported from here before they had a module of their own
__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_EPOCHS",
    "MAX_LR",
    "MAX_SEED",
    "MAX_THREADS",
    "OPTIMIZERS",
    "TrainResult",
    "TrainSettings",
    "check_int",
    "check_number",
    "evaluate",
    "is_int",
    "is_number",
    "param_groups",
    "schedule",
    "torch_threads",
    "train",
]


@dataclass(frozen=True)
class TrainResult:
    val_accuracy: float  #: a fraction in [0, 1]
    val_loss: float
    epochs_run: int
    stopped_early: bool  #: a pruner judged the run hopeless
    seconds: float


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def param_groups(net: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The optimizer's groups: conv and linear weights (more than one axis) decayed by
    ``weight_decay``, biases and norms' scales never (decaying them only costs accuracy)."""
    decayed = [p for p in net.parameters() if p.requires_grad and p.ndim > 1]
    kept = [p for p in net.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decayed, "weight_decay": weight_decay}]
    if kept:
        groups.append({"params": kept, "weight_decay": 0.0})
    return groups


def _optimizer(net: nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    # no decay: one group of all parameters, as before there was any (the same steps)
    params: Any = param_groups(net, s.weight_decay) if s.weight_decay else net.parameters()
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.learning_rate, momentum=0.9)
    if s.optimizer == "adamw":  # its own default decay (0.01) only where none is set
        return torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=0.0)
    return torch.optim.Adam(params, lr=s.learning_rate)


def schedule(
    opt: torch.optim.Optimizer, settings: TrainSettings, steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """``cosine``: the rate annealed per step from lr to 0 over ``steps`` (the whole run,
    also when a pruner stops it early); ``constant``: None, the rate stays."""
    if settings.schedule == "constant":
        return None
    total = max(1, steps)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    )


def evaluate(
    net: nn.Module, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256
) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy in [0, 1]) on NCHW float32 ``x``."""
    if len(x) == 0:
        raise SettingsError("cannot evaluate on an empty set")
    net.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[start : start + batch_size])
            yb = torch.from_numpy(y[start : start + batch_size])
            logits = net(xb)
            loss_sum += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    return loss_sum / len(x), correct / len(x)


def train(
    net: nn.Module,
    data: Split,
    settings: TrainSettings,
    *,
    on_epoch: Callable[[int, float], bool] | None = None,
) -> TrainResult:
    """Train in place: ``settings``' optimizer, schedule, decay, label smoothing and
    augmentation (training samples only). ``on_epoch(epoch, val_accuracy)`` returning True
    stops the run. An empty validation part (the winner's retraining on all of it) is
    never evaluated: the result's accuracy and loss are then NaN."""
    settings.validate()
    start = time.perf_counter()
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    generator = torch.Generator().manual_seed(settings.seed)
    # its own stream: the batches' order stays what it was without augmentation
    augmenting = torch.Generator().manual_seed(settings.seed + 1)
    shifts, flips = settings.augment == "shift", settings.flips
    steps_per_epoch = math.ceil(len(x) / settings.batch_size)
    stopped, epoch = False, 0
    with torch_threads(settings.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        opt = _optimizer(net, settings)
        rate = schedule(opt, settings, settings.epochs * steps_per_epoch)
        for epoch in range(settings.epochs):
            net.train()
            order = torch.randperm(len(x), generator=generator)
            for i in range(0, len(x), settings.batch_size):
                idx = order[i : i + settings.batch_size]
                xb = augment(x[idx], augmenting, shifts=shifts, flips=flips)
                opt.zero_grad()
                loss = nn.functional.cross_entropy(
                    net(xb), y[idx], label_smoothing=settings.label_smoothing
                )
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                if rate is not None:
                    rate.step()
            if on_epoch is not None and epoch + 1 < settings.epochs:
                _, acc = evaluate(net, data.x_val, data.y_val)
                if on_epoch(epoch, acc):
                    stopped = True
                    break
        if len(data.x_val):
            val_loss, val_acc = evaluate(net, data.x_val, data.y_val)
        else:
            val_loss, val_acc = math.nan, math.nan
    return TrainResult(val_acc, val_loss, epoch + 1, stopped, time.perf_counter() - start)
