"""The winner's retraining: a board's best candidate trained again from scratch, with the
search's seed, on the training and validation parts together, for ``final_epochs``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..build import CandidateNet, build
from ..errors import SettingsError
from ..space import Candidate
from .data import Split
from .settings import TrainSettings
from .train import TrainResult, train


def train_and_validation(data: Split) -> Split:
    """The training part with the validation part added, and no validation part left (the
    held-out test set, if any, is what judges the retrained model)."""
    return Split(
        np.concatenate([data.x_train, data.x_val]),
        np.concatenate([data.y_train, data.y_val]),
        data.x_val[:0],
        data.y_val[:0],
    )


def retrain(
    candidate: Candidate, data: Split, settings: TrainSettings, *, seed: int
) -> tuple[CandidateNet, TrainResult]:
    """``candidate`` built from ``seed`` (as the search built it) and trained on
    train+validation for ``settings.final_epochs_run`` epochs (>= 1), its recipe the
    search's; the result's validation figures are NaN (nothing is held out)."""
    epochs = settings.final_epochs_run
    if epochs < 1:
        raise SettingsError("final_epochs is 0: there is no retraining to run")
    net = build(candidate, seed=seed)
    result = train(net, train_and_validation(data), replace(settings, epochs=epochs))
    return net, result
