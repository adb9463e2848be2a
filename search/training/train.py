"""Train a candidate's module on CPU: seeded, deterministic, small budgets."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import SettingsError
from .data import Split

#: name -> default lr: higher than the usual 1e-3 because a search trains each candidate for a
#: few epochs only (on digits, 3 epochs: adam 1e-3 -> 15%, 1e-2 -> 80% validation accuracy)
OPTIMIZERS = {"adam": 1e-2, "sgd": 5e-2, "adamw": 1e-2}


#: Ranges of the settings (a value outside one is refused, naming it, before anything runs).
#: The seed seeds numpy's and Optuna's samplers, which take 32 bits; the others bound
#: values that are typos (an lr of 1e3 diverges at once, 2**40 threads cannot start).
MAX_SEED = 2**32 - 1
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 2**20
MAX_THREADS = 1024
MAX_LR = 10.0


def is_int(value: object) -> bool:
    """An int, numpy's too; never a bool (``trials = true`` is not one trial)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value: object) -> bool:
    """An int or float, numpy scalars too (a budget computed with numpy is still a number)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_int(name: str, value: object, low: int, high: int) -> None:
    """``low <= value <= high``, an integer; else one SettingsError naming it."""
    if not is_int(value):
        raise SettingsError(f"{name} must be an integer, got {value!r}")
    number = int(value)  # type: ignore[call-overload]
    if number < low:
        raise SettingsError(f"{name} must be >= {low}, got {number}")
    if number > high:
        raise SettingsError(f"{name} must be <= {high}, got {number}")


def check_number(
    name: str, value: object, low: float, high: float, *, low_open: bool = False
) -> None:
    """A finite number in [low, high] (``low_open``: (low, high]); else one SettingsError."""
    if not is_number(value) or not math.isfinite(float(value)):  # type: ignore[arg-type]
        raise SettingsError(f"{name} must be a finite number, got {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if number < low or (low_open and number == low):
        raise SettingsError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if number > high:
        raise SettingsError(f"{name} must be <= {high:g}, got {value!r}")


@dataclass(frozen=True)
class TrainSettings:
    optimizer: str = "adam"
    lr: float | None = None  #: None: the optimizer's default (OPTIMIZERS)
    epochs: int = 5
    batch_size: int = 64
    seed: int = 0
    threads: int = 1  #: torch intra-op threads while training (more rarely pays for tiny CNNs)

    def validate(self) -> None:
        if not isinstance(self.optimizer, str) or self.optimizer not in OPTIMIZERS:
            raise SettingsError(
                f"unknown optimizer {self.optimizer!r} (known: {', '.join(OPTIMIZERS)})"
            )
        check_int("epochs", self.epochs, 1, MAX_EPOCHS)
        check_int("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        check_int("seed", self.seed, 0, MAX_SEED)
        check_int("threads", self.threads, 1, MAX_THREADS)
        if self.lr is not None:
            check_number("lr", self.lr, 0.0, MAX_LR, low_open=True)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else OPTIMIZERS[self.optimizer]


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
