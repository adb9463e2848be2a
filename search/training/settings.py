"""How a candidate is trained (:class:`TrainSettings`, whose defaults are the search's, CLI
and API alike) and the range checks every setting shares. Light: no torch, so the ``hwnas``
verbs read the defaults from here at start."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import SettingsError

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
    """The defaults here are the search's everywhere: ``Searcher``, ``hwnas search`` and
    search.toml read them (10 epochs of batches of 32: what the CLI always trained)."""

    optimizer: str = "adam"
    lr: float | None = None  #: None: the optimizer's default (OPTIMIZERS)
    epochs: int = 10
    batch_size: int = 32
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
