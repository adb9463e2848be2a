"""How a candidate is trained (:class:`TrainSettings`, whose defaults are the search's, CLI
and API alike) and the range checks every setting shares. Light: no torch, so the ``hwnas``
verbs read the defaults from here at start."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

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
#: the most weight decay (an L2 factor: 1.0 already zeroes a net in a few steps)
MAX_WEIGHT_DECAY = 1.0

#: how the learning rate moves over the run: "cosine" anneals it per step from lr to 0
#: (what short runs of small CNNs train best with), "constant" keeps it (the seed's loop)
SCHEDULES = ("cosine", "constant")
#: "shift": each training sample moved by up to 1/8 of each spatial axis (zeros shifted
#: in); "none": the samples as they are
AUGMENTS = ("shift", "none")
#: a record (search.json's ``train``) without one of these keys was written before it
#: existed and trained this way; a key at this value is left out of the record again, so
#: an old run resumes (and compares) as it was
LEGACY_TRAIN = {
    "schedule": "constant",
    "weight_decay": 0.0,
    "label_smoothing": 0.0,
    "augment": "none",
    "flips": False,
    "final_epochs": 0,
}
#: final_epochs None: the winner is retrained for this many times ``epochs``
FINAL_EPOCHS_FACTOR = 3


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


def check_choice(name: str, value: object, known: tuple[str, ...]) -> None:
    """``value`` one of ``known``; else one SettingsError naming them."""
    if not isinstance(value, str) or value not in known:
        raise SettingsError(f"unknown {name} {value!r} (known: {', '.join(known)})")


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
    schedule: str = "cosine"  #: SCHEDULES
    #: L2 on conv and linear weights (never biases or norms); adamw decouples it. On digits
    #: 5e-4 with the cosine schedule is within 0.1 point of none (cosine alone: +0.8)
    weight_decay: float = 5e-4
    #: in [0, 1): the training loss's target smoothing. 0.1 (as timm's recipes): on digits
    #: the README quick start's test accuracy went from 98.6% to 99.2% (docs/search.md)
    label_smoothing: float = 0.1
    #: AUGMENTS, on the training samples only. "none" by default: on digits (8x8, and
    #: resized to 32x32x3) shifts cost 10-12 points of mean validation accuracy over 10 epochs
    augment: str = "none"
    #: also mirror samples (the last axis: left-right, a 1-D window reversed in time):
    #: only where the classes do not depend on it (a 2 is no mirrored 2)
    flips: bool = False
    #: epochs the best model of each board is retrained for on train+validation before it
    #: ships (None: FINAL_EPOCHS_FACTOR x epochs; 0: no retraining, the searched model ships)
    final_epochs: int | None = None

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
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("augment", self.augment, AUGMENTS)
        check_number("weight_decay", self.weight_decay, 0.0, MAX_WEIGHT_DECAY)
        check_number("label_smoothing", self.label_smoothing, 0.0, 1.0)
        if self.label_smoothing == 1.0:  # every target uniform: nothing left to learn
            raise SettingsError(f"label_smoothing must be < 1, got {self.label_smoothing!r}")
        if not isinstance(self.flips, bool):
            raise SettingsError(f"flips must be True or False, got {self.flips!r}")
        if self.final_epochs is not None:
            check_int("final_epochs", self.final_epochs, 0, MAX_EPOCHS)

    @property
    def final_epochs_run(self) -> int:
        """The epochs of the winner's retraining (0: none)."""
        if self.final_epochs is None:
            return min(MAX_EPOCHS, FINAL_EPOCHS_FACTOR * self.epochs)
        return self.final_epochs

    def to_record(self) -> dict[str, Any]:
        """search.json's ``train``: every field, less those at their LEGACY_TRAIN value (a
        record without them reads back the same; an old run's record is unchanged)."""
        data = asdict(self)
        return {k: v for k, v in data.items() if k not in LEGACY_TRAIN or v != LEGACY_TRAIN[k]}

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> TrainSettings:
        """:meth:`to_record`'s form; a key it lacks is the LEGACY_TRAIN value (what a run
        recorded before the key existed trained with). TypeError for an unknown key."""
        return cls(**{**LEGACY_TRAIN, **data})

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else OPTIMIZERS[self.optimizer]
