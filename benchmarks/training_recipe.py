"""The training recipe's defaults, measured: mean validation accuracy and seconds per
candidate of each recipe over valid candidates sampled from the CLI's default space.

    python benchmarks/training_recipe.py [--size 8] [--candidates 8] [--epochs 10]
        [--recipes legacy,cosine,...]

Digits (the 80% the search sees, its seeded 80/20 split), at 8x8x1 or resized to
``--size`` (bilinear, 3 channels). One line per recipe: mean, median and best accuracy, then
each candidate's. docs/search.md's Training figures come from this script.
"""

from __future__ import annotations

import argparse
import random
import statistics
from dataclasses import replace

import numpy as np
import torch

from search.build import build
from search.cli.search_flags import DEFAULT_SPACE
from search.space import SearchSpace
from search.training.data import labels, load_dataset, split, to_nchw
from search.training.settings import LEGACY_TRAIN, TrainSettings
from search.training.train import train

_BASE = TrainSettings()
_LEGACY = replace(_BASE, **LEGACY_TRAIN)
RECIPES = {
    "legacy": _LEGACY,  # the loop before the recipe: constant rate, nothing else
    "cosine": replace(_LEGACY, schedule="cosine"),
    "cosine+decay": replace(_LEGACY, schedule="cosine", weight_decay=5e-4),
    "cosine+decay+shift": replace(_LEGACY, schedule="cosine", weight_decay=5e-4, augment="shift"),
    "cosine+smoothing": replace(_LEGACY, schedule="cosine", label_smoothing=0.1),
    "cosine+decay+smoothing": replace(
        _LEGACY, schedule="cosine", weight_decay=5e-4, label_smoothing=0.1
    ),
    "cosine+decay+smoothing+shift": replace(
        _LEGACY, schedule="cosine", weight_decay=5e-4, label_smoothing=0.1, augment="shift"
    ),
    "default": replace(_BASE, final_epochs=0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    args = parser.parse_args()
    data = load_dataset("digits")
    x = data.x
    if args.size != 8:
        images = torch.from_numpy(x).permute(0, 3, 1, 2)
        resized = torch.nn.functional.interpolate(images, size=(args.size,) * 2, mode="bilinear")
        x = resized.permute(0, 2, 3, 1).repeat(1, 1, 1, 3).numpy()
    space = SearchSpace.from_dict({"input_shape": x.shape[1:], **DEFAULT_SPACE}).with_classes(10)
    parts = split(to_nchw(x, space.hwc), labels(data.y), 0.2, 0)
    rng = random.Random(1)
    candidates = []
    while len(candidates) < args.candidates:  # valid, with at least one conv
        c = space.suggest(lambda _name, choices: rng.choice(list(choices)))
        if c.is_valid() and any(layer.kind in ("conv", "dwconv") for layer in c.layers):
            candidates.append(c)
    for name in args.recipes.split(","):
        settings = replace(RECIPES[name], epochs=args.epochs)
        runs = [train(build(c, seed=0), parts, settings) for c in candidates]
        acc = [r.val_accuracy for r in runs]
        print(
            f"{args.size}px {args.epochs} epochs {name:20s} mean {np.mean(acc):.4f} "
            f"median {np.median(acc):.4f} best {max(acc):.4f} "
            f"s/candidate {statistics.mean(r.seconds for r in runs):.2f}  "
            + " ".join(f"{a:.3f}" for a in acc),
            flush=True,
        )


if __name__ == "__main__":
    main()
