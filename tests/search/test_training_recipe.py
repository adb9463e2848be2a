"""The training recipe: cosine schedule, weight decay by parameter group, label smoothing,
shift augmentation of 2-D and 1-D samples, flips only when allowed, the settings' checks,
and old records reading back as the recipe they trained with."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from search.build import build
from search.errors import SettingsError
from search.settings import SearchSettings
from search.space import Candidate
from search.training.augment import augment, flip, max_shifts, shift
from search.training.data import Split, load_dataset, split, to_nchw
from search.training.settings import LEGACY_TRAIN
from search.training.train import TrainSettings, _optimizer, param_groups, schedule, train

TINY = Candidate.decode("in8x8x1-conv_k3_s1_c4-pool_k2_s2-out10")


def _digits(n: int = 300) -> Split:
    d = load_dataset("digits")
    return split(to_nchw(d.x[:n], (8, 8, 1)), d.y[:n], 0.25, 0)


def _weights(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def test_the_defaults_are_the_recipe_and_old_records_the_old_loop() -> None:
    s = TrainSettings()
    assert (s.schedule, s.augment, s.flips, s.label_smoothing) == ("cosine", "none", False, 0.1)
    assert s.weight_decay > 0
    assert s.final_epochs is None
    assert s.final_epochs_run == 3 * s.epochs
    assert TrainSettings(epochs=4, final_epochs=0).final_epochs_run == 0
    # a record written before these keys existed trained with the constant loop
    old = {"optimizer": "adam", "lr": None, "epochs": 2, "batch_size": 32, "seed": 0, "threads": 1}
    legacy = TrainSettings.from_record(old)
    assert legacy == TrainSettings(**old, **LEGACY_TRAIN)  # type: ignore[arg-type]
    assert legacy.to_record() == old  # and it is written back as it was (resume compares it)
    assert TrainSettings.from_record(s.to_record()) == s
    record = SearchSettings(train=s).to_dict()
    assert record["train"]["schedule"] == "cosine"
    assert SearchSettings.from_dict(record).train == s
    with pytest.raises(TypeError):
        TrainSettings.from_record({**old, "warmup": 3})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schedule", "linear"),
        ("schedule", None),
        ("augment", "crop"),
        ("weight_decay", -0.1),
        ("weight_decay", math.nan),
        ("weight_decay", 2.0),
        ("weight_decay", "0.1"),
        ("label_smoothing", 1.0),
        ("label_smoothing", -0.1),
        ("flips", "yes"),
        ("flips", 1),
        ("final_epochs", -1),
        ("final_epochs", 2.5),
        ("final_epochs", True),
    ],
)
def test_bad_recipe_values_are_refused_naming_them(field: str, value: object) -> None:
    with pytest.raises(SettingsError, match=field):
        replace(TrainSettings(), **{field: value}).validate()


def test_weight_decay_applies_to_weights_never_to_biases_or_norms() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    groups = param_groups(net, 1e-3)
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 1e-3
    assert groups[1]["weight_decay"] == 0.0
    assert decayed == {id(net[0].weight), id(net[3].weight)}
    assert len(groups[1]["params"]) == 4  # conv and fc biases, the norm's scale and shift
    for name in ("adam", "adamw", "sgd"):
        opt = _optimizer(net, TrainSettings(optimizer=name, weight_decay=1e-3))
        assert [g["weight_decay"] for g in opt.param_groups] == [1e-3, 0.0], name
    plain = _optimizer(net, TrainSettings(optimizer="adamw", weight_decay=0.0))
    assert [g["weight_decay"] for g in plain.param_groups] == [0.0]  # not AdamW's own 0.01


def test_the_cosine_schedule_anneals_to_zero_over_the_run_and_constant_keeps_the_rate() -> None:
    net = nn.Linear(2, 2)
    steps = 10
    for kind, expected_last in (("cosine", 0.1 * 0.5 * (1 + math.cos(math.pi * 9 / 10))),):
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        rate = schedule(opt, TrainSettings(schedule=kind), steps)
        assert rate is not None
        seen = []
        for _ in range(steps):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            rate.step()
        assert seen[0] == pytest.approx(0.1)
        assert seen[-1] == pytest.approx(expected_last)  # the last step's rate, near 0
        assert all(a > b for a, b in itertools.pairwise(seen))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    assert schedule(opt, TrainSettings(schedule="constant"), steps) is None


def test_each_recipe_part_changes_the_training_and_none_of_them_its_determinism() -> None:
    data = _digits()
    legacy = TrainSettings(epochs=2, seed=1, **LEGACY_TRAIN)  # type: ignore[arg-type]
    results = {}
    for name, settings in {
        "legacy": legacy,
        "cosine": replace(legacy, schedule="cosine"),
        "decay": replace(legacy, weight_decay=0.01),
        "smoothing": replace(legacy, label_smoothing=0.2),
        "shift": replace(legacy, augment="shift"),
        "flips": replace(legacy, flips=True),
    }.items():
        net = build(TINY, seed=2)
        train(net, data, settings)
        again = build(TINY, seed=2)
        train(again, data, settings)
        first = _weights(net)
        assert all(torch.equal(a, b) for a, b in zip(first, _weights(again), strict=True)), name
        results[name] = first
    for name, weights in results.items():
        if name != "legacy":
            same = all(torch.equal(a, b) for a, b in zip(weights, results["legacy"], strict=True))
            assert not same, f"{name} changed nothing"


def test_the_default_recipe_learns_digits() -> None:
    result = train(build(TINY, seed=0), _digits(600), TrainSettings(epochs=4))
    assert result.val_accuracy > 0.8


def test_training_on_everything_leaves_the_validation_figures_nan() -> None:
    data = _digits(100)
    everything = Split(
        np.concatenate([data.x_train, data.x_val]),
        np.concatenate([data.y_train, data.y_val]),
        data.x_val[:0],
        data.y_val[:0],
    )
    result = train(build(TINY), everything, TrainSettings(epochs=1))
    assert math.isnan(result.val_accuracy)
    assert math.isnan(result.val_loss)
    assert result.epochs_run == 1


def _dots(spatial: tuple[int, ...], n: int = 64) -> torch.Tensor:
    """``n`` samples of two channels, each a single 1 in the middle of its own channel."""
    x = torch.zeros((n, 2, *spatial))
    middle = tuple(s // 2 for s in spatial)
    x[(slice(None), 0, *middle)] = 1.0
    x[(slice(None), 1, *middle)] = 2.0
    return x


@pytest.mark.parametrize("spatial", [(8, 8), (32, 32), (40,), (128,)])
def test_a_shift_moves_each_sample_within_its_limit_and_keeps_shape_and_channels(
    spatial: tuple[int, ...],
) -> None:
    x = _dots(spatial)
    out = shift(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    limits = max_shifts(spatial)
    assert limits == tuple(max(1, s // 8) for s in spatial)
    middle = np.array([s // 2 for s in spatial])
    moved = set()
    for sample in out:
        assert float(sample[0].sum()) == 1.0
        assert float(sample[1].sum()) == 2.0
        where = np.argwhere(sample[0].numpy() == 1.0)[0]
        assert np.array_equal(np.argwhere(sample[1].numpy() == 2.0)[0], where)  # moved together
        offset = where - middle
        assert all(abs(o) <= m for o, m in zip(offset, limits, strict=True))
        moved.add(tuple(offset))
    assert len(moved) > 1  # the samples move, each by its own offset
    assert any(o != 0 for offset in moved for o in offset)


def test_a_shift_brings_in_zeros_and_drops_what_leaves() -> None:
    x = torch.ones((200, 1, 8))
    out = shift(x, torch.Generator().manual_seed(3))
    sums = {float(s.sum()) for s in out}
    assert sums == {7.0, 8.0}  # one of 8 samples' values shifted out, a zero shifted in
    assert torch.equal(shift(torch.ones(4, 1, 2, 3), torch.Generator()), torch.ones(4, 1, 2, 3))


def test_flips_happen_only_when_allowed_and_mirror_the_last_axis() -> None:
    ramp = torch.arange(8.0).repeat(64, 1, 1)  # (64, 1, 8): a 1-D window
    g = torch.Generator().manual_seed(0)
    assert augment(ramp, g, shifts=False, flips=False) is ramp
    assert torch.equal(augment(ramp, g, shifts=True, flips=False).sum(), ramp.sum()) is False
    flipped = flip(ramp, torch.Generator().manual_seed(0))
    reversed_ = [bool(torch.equal(s, ramp[0].flip(-1))) for s in flipped]
    kept = [bool(torch.equal(s, ramp[0])) for s in flipped]
    assert all(r or k for r, k in zip(reversed_, kept, strict=True))
    assert 0 < sum(reversed_) < len(ramp)  # some samples reversed in time, some not
    image = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(32, 1, 1, 1)
    mirrored = flip(image, torch.Generator().manual_seed(1))
    for sample in mirrored:  # left-right only: the rows stay where they are
        assert torch.equal(sample, image[0]) or torch.equal(sample, image[0].flip(-1))
    labels = torch.arange(32)
    out = augment(image, torch.Generator(), shifts=True, flips=True)
    assert out.shape == image.shape
    assert torch.equal(labels, torch.arange(32))
