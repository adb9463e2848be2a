"""Candidates: canonical encoding, stable hash, shape inference, invalid ones, the genome."""

from __future__ import annotations

import random

import pytest

from search import Candidate, InvalidCandidate, Layer, SearchSpace, SpaceError

ENC = "in8x8x1-conv_k3_s1_c8-dw_k3_s2_c16-pool_k2_s2-fc_u32-out10"


def test_encoding_round_trips_and_the_hash_is_stable() -> None:
    c = Candidate.decode(ENC)
    assert c.encode() == ENC
    assert Candidate.decode(c.encode()) == c
    assert c.layers[1] == Layer("dwconv", kernel=3, stride=2, width=16)
    # sha256("in8x8x1-conv_k3_s1_c8-...")[:12]: fixed forever, so runs can be compared
    assert c.hash == "008076151bfd"


def test_every_sampled_candidate_round_trips() -> None:
    space = SearchSpace(
        input_shape=(16, 16, 3),
        num_layers=(1, 5),
        layer_types=["conv", "dwconv", "pool", "fc", "skip"],
        conv_kernels=[1, 3, 5],
        conv_strides=[1, 2],
        fc_sizes=[8, 64],
        num_classes=4,
    )
    rng = random.Random(0)
    for _ in range(200):
        c = space.suggest(lambda name, choices: rng.choice(list(choices)))
        assert Candidate.decode(c.encode()) == c
        kinds = [layer.kind for layer in c.layers]
        assert "skip" not in kinds
        # canonical order: feature layers first, fully-connected after
        assert kinds == sorted(kinds, key=lambda k: k == "fc")


@pytest.mark.parametrize("text", ["", "conv_k3", "in8x8x1-bogus_k3-out10", "in8x8x1-conv_q3-out2"])
def test_bad_encodings_are_refused(text: str) -> None:
    with pytest.raises(SpaceError):
        Candidate.decode(text)


def test_shapes_are_inferred_layer_by_layer() -> None:
    shapes = Candidate.decode(ENC).shapes()
    assert shapes == [
        ((1, 8, 8), (8, 8, 8)),  # conv k3 s1, 'same' padding
        ((8, 8, 8), (16, 4, 4)),  # depthwise k3 s2 then pointwise to 16
        ((16, 4, 4), (16, 2, 2)),  # max pool 2/2
        ((64,), (32,)),  # flatten 16*2*2, fc 32
        ((32,), (10,)),  # classifier
    ]


def test_a_candidate_whose_spatial_size_drops_below_one_is_invalid_not_a_crash() -> None:
    c = Candidate.decode("in8x8x1-pool_k2_s2-pool_k2_s2-pool_k2_s2-pool_k2_s2-out10")
    assert not c.is_valid()
    with pytest.raises(InvalidCandidate) as info:
        c.shapes()
    assert info.value.layer == 3
    assert "below 1" in str(info.value)


def test_duplicate_choices_are_harmless_and_the_issue_example_builds() -> None:
    space = SearchSpace(
        input_shape=(32, 32, 3),
        output_shape=(1,),
        num_layers=5,
        layer_types=["conv", "pool", "fc"],
        conv_kernels=[3, 3],
        conv_strides=[1, 1],
        pool_sizes=[2, 2],
        pool_strides=[2, 2],
        fc_sizes=[64, 128],
    )
    assert space.genes["l0_kernel"] == (3,)
    assert space.genes["l4_type"] == ("conv", "pool", "fc")
    assert "depth" not in space.genes  # a fixed depth is not a gene
    assert space.num_classes is None  # taken from the labels at search time
    assert (
        space.with_classes(3).decode({**{k: v[0] for k, v in space.genes.items()}}).num_classes == 3
    )


def test_num_layers_range_and_validation() -> None:
    space = SearchSpace(input_shape=(8, 8, 1), num_layers=(2, 4), num_classes=10)
    assert space.genes["depth"] == (2, 3, 4)
    genes = {k: v[0] for k, v in space.genes.items()} | {"depth": 2}
    assert len(space.decode(genes).layers) == 2
    assert SearchSpace.from_dict(space.to_dict()) == space
    with pytest.raises(SpaceError):
        SearchSpace(input_shape=(8, 8, 1), layer_types=["conv", "lstm"])
    with pytest.raises(SpaceError):
        SearchSpace(input_shape=(8, 8, 1), fc_sizes=[])
    with pytest.raises(SpaceError):
        SearchSpace(input_shape=(8, 8, 1), num_layers=(3, 2))
