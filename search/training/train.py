"""Train a candidate's module on CPU: seeded, deterministic, small budgets."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import SettingsError
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


def _optimizer(net: nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "sgd":
        return torch.optim.SGD(net.parameters(), lr=s.learning_rate, momentum=0.9)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(net.parameters(), lr=s.learning_rate)
    return torch.optim.Adam(net.parameters(), lr=s.learning_rate)


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
    """Train in place. ``on_epoch(epoch, val_accuracy)`` returning True stops the run."""
    settings.validate()
    start = time.perf_counter()
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    generator = torch.Generator().manual_seed(settings.seed)
    stopped, epoch = False, 0
    with torch_threads(settings.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        opt = _optimizer(net, settings)
        for epoch in range(settings.epochs):
            net.train()
            order = torch.randperm(len(x), generator=generator)
            for i in range(0, len(x), settings.batch_size):
                idx = order[i : i + settings.batch_size]
                opt.zero_grad()
                loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
            if on_epoch is not None and epoch + 1 < settings.epochs:
                _, acc = evaluate(net, data.x_val, data.y_val)
                if on_epoch(epoch, acc):
                    stopped = True
                    break
        val_loss, val_acc = evaluate(net, data.x_val, data.y_val)
    return TrainResult(val_acc, val_loss, epoch + 1, stopped, time.perf_counter() - start)
