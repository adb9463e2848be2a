"""The stage (macro) space (search/blocks/stages.py): validation, size, sampling from an
optuna-like trial, the encoding and its decoding, the [space.stages] table, and sampled
nets that build, export and run in onnxruntime as in torch, on 2-D and 1-D inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import optuna
import pytest
import tomllib
import torch

from search.blocks import BlockNet, to_onnx
from search.blocks.references import MOBILENET_V2_STAGES, mobilenet_v2
from search.blocks.stages import (
    RandomSuggest,
    StageCandidate,
    StageSpace,
    StageSpec,
    StemSpec,
)
from search.errors import SpaceError

from .blocks_support import run_onnx, with_moved_statistics


class Fixed:
    """Suggestions from a dict (the first choice for a name it lacks); records the names."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values, self.asked = values, []  # type: ignore[var-annotated]

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.asked.append(name)
        value = self.values.get(name, choices[0])
        assert value in choices, (name, value, choices)
        return value

    def suggest_int(self, name: str, low: int, high: int) -> int:
        self.asked.append(name)
        value = int(self.values.get(name, low))
        assert low <= value <= high
        return value


def small_space(**over: Any) -> StageSpace:
    values: dict[str, Any] = {
        "stages": (
            StageSpec(
                "mbconv",
                (1, 2),
                (8, 16),
                stride=2,
                kernels=(3, 5),
                expansions=(3, 6),
                se=(False, True),
            ),
            StageSpec("res", (1, 2), (24,), stride=2),
            StageSpec("dwconv", (1, 1), (32, 40), kernels=(3, 7)),
        ),
        "width_multipliers": (0.5, 1.0),
        "resolutions": (16, 24),
        "stem": StemSpec(width=16),
        "head_width": 64,
    }
    values.update(over)
    return StageSpace(**values)


def test_the_encoding_names_every_choice() -> None:
    trial = Fixed(
        {
            "resolution": 24,
            "width_mult": 1.0,
            "s0.depth": 2,
            "s0.width": 16,
            "s0.b0.kernel": 5,
            "s0.b0.expansion": 6,
            "s0.b0.se": True,
            "s0.b1.kernel": 3,
            "s0.b1.expansion": 3,
            "s0.b1.se": False,
            "s1.depth": 1,
            "s2.width": 40,
            "s2.b0.kernel": 7,
        }
    )
    candidate = small_space().sample(trial)
    assert candidate.encode() == (
        "r24-conv_k3_s2_c16_relu6-mb_e6_k5_s2_c16_se_relu6-mb_e3_k3_s1_c16_relu6"
        "-res_s2_c24_relu6-dw_k7_s1_c40_relu6-conv_k1_s1_c64_relu6-gap"
    )
    # a stage with one width and one depth asks nothing of them; the names are stable
    assert "s1.width" not in trial.asked
    assert "s2.depth" not in trial.asked
    assert trial.asked[:3] == ["resolution", "width_mult", "s0.depth"]


def test_the_width_multiplier_scales_every_width_to_a_multiple_of_8_but_the_head() -> None:
    candidate = small_space().sample(Fixed({"width_mult": 0.5}))
    assert candidate.encode() == (
        "r16-conv_k3_s2_c8_relu6-mb_e3_k3_s2_c8_relu6-res_s2_c16_relu6-dw_k3_s1_c16_relu6"
        "-conv_k1_s1_c64_relu6-gap"
    )  # 24 x 0.5 = 12 rounds to 16; the 64 head stays (scaled only above 1, as MobileNetV2)


@pytest.mark.parametrize("seed", range(25))
def test_sampled_encodings_round_trip(seed: int) -> None:
    space = small_space()
    candidate = space.sample(RandomSuggest(seed))
    text = candidate.encode()
    assert space.decode(text) == candidate
    assert space.decode(text).encode() == text


def test_an_optuna_trial_samples_and_its_encoding_round_trips() -> None:
    space = small_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(8):
        trial = study.ask()
        candidate = space.sample(trial)
        assert space.decode(candidate.encode()) == candidate
        seen.add(candidate.encode())
        study.tell(trial, 0.0)
    assert len(seen) > 1


def test_the_size_counts_every_combination() -> None:
    # mbconv: 2 widths x (8 + 8^2) per-block combos; res: 1 x (1 + 1); dwconv: 2 x 2
    stages = 2 * (8 + 64) * 2 * 4
    assert small_space().size() == 2 * 2 * stages  # resolutions x multipliers x stages
    assert small_space(resolutions=(), width_multipliers=(1.0,)).size() == stages


def test_a_space_without_stem_head_pool_or_resolutions() -> None:
    space = StageSpace(
        stages=(StageSpec("conv", (2, 2), (8,), stride=1, kernels=(3,)),),
        stem=None,
        pool=False,
        act="relu",
    )
    candidate = space.sample(RandomSuggest(0))
    assert candidate == StageCandidate(space.decode("conv_k3_s1_c8_relu-conv_k3_s1_c8_relu").blocks)
    assert candidate.encode() == "conv_k3_s1_c8_relu-conv_k3_s1_c8_relu"
    assert space.size() == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: StageSpec("nope", (1, 2), (8,)), "unknown stage kind 'nope'"),
        (lambda: StageSpec("pool", (1, 2), (8,)), "stage kind 'pool' has no width gene"),
        (lambda: StageSpec("gap", (1, 2), (8,)), "has no stride or width gene"),
        (lambda: StageSpec("mbconv", (3, 1), (8,)), "1 <= low <= high <= 16, got [3, 1]"),
        (lambda: StageSpec("mbconv", (0, 2), (8,)), "got [0, 2]"),
        (lambda: StageSpec("mbconv", (1, 17), (8,)), "got [1, 17]"),
        (lambda: StageSpec("mbconv", "2", (8,)), "stage depth must be [low, high]"),
        (lambda: StageSpec("mbconv", (1, 2), ()), "stage widths must be integers >= 1"),
        (lambda: StageSpec("mbconv", (1, 2), (8, 8)), "stage widths name a value twice"),
        (lambda: StageSpec("mbconv", (1, 2), (0,)), "stage widths must be integers >= 1"),
        (lambda: StageSpec("mbconv", (1, 2), (8,), stride=5), "stride must be one of 1|2|3|4"),
        (lambda: StageSpec("res", (1, 2), (8,), kernels=(3,)), "'res' has no kernel gene"),
        (lambda: StageSpec("conv", (1, 2), (8,), expansions=(6,)), "no expansion gene"),
        (lambda: StageSpec("mbconv", (1, 2), (8,), kernels=(4,)), "kernel must be one of 3|5|7"),
        (lambda: StageSpec("mbconv", (1, 2), (8,), expansions=(2,)), "expansion must be one of"),
        (lambda: StageSpec("mbconv", (1, 2), (8,), se=("yes",)), "se must be true or false"),
        (lambda: StageSpec("mbconv", (1, 2), (8,), kernels=()), "kernels must name at least"),
        (lambda: StageSpec("mbconv", (1, 2), (8,), act="gelu"), "act must be one of relu|"),
        (lambda: small_space(stages=()), "needs at least one StageSpec"),
        (lambda: small_space(width_multipliers=(0.0,)), "width_multipliers must be numbers"),
        (lambda: small_space(width_multipliers=()), "width_multipliers must name at least"),
        (lambda: small_space(resolutions=(32, 0)), "resolutions must be integers >= 1"),
        (lambda: small_space(head_width=0), "head_width must be integers >= 1"),
        (lambda: small_space(act="tanh"), "act must be one of relu|relu6|hswish"),
        (lambda: StemSpec(kernel=2), "stem: kernel must be one of 1|3|5|7"),
        (lambda: StemSpec(width=0), "stem width must be integers >= 1"),
        (lambda: StageSpec("mbconv", (1, 2), (70000,)), "width must be one of 1..65536"),
    ],
)
def test_invalid_specs_are_refused_with_the_reason(make: Any, message: str) -> None:
    with pytest.raises(SpaceError) as info:
        make()
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("conv_k3_s2_c16_relu6-gap", "has no resolution: it must start r<size>-"),
        ("r32-conv_k3_s2_c16_relu6", "resolution 32 is not one of [16, 24]"),
        ("r16-conv_k3_s1_c16_relu6-gap", "block 0 is not the stem"),
        (
            "r16-conv_k3_s2_c16_relu6-mb_e6_k3_s1_c16_relu6-res_s2_c24_relu6"
            "-dw_k3_s1_c32_relu6-conv_k1_s1_c64_relu6-gap",
            "block 1 has stride 1 (stage 0)",
        ),
        (
            "r16-conv_k3_s2_c16_relu6-mb_e6_k3_s2_c24_relu6-res_s2_c24_relu6"
            "-dw_k3_s1_c32_relu6-conv_k1_s1_c64_relu6-gap",
            "block 1 has width 24, not the stage's [8, 16] (stage 0)",
        ),
        (
            "r16-conv_k3_s2_c16_relu6-mb_e4_k3_s2_c16_relu6-res_s2_c24_relu6"
            "-dw_k3_s1_c32_relu6-conv_k1_s1_c64_relu6-gap",
            "block 1 has expansion 4, not one of [3, 6]",
        ),
        (
            "r16-conv_k3_s2_c16_relu6-mb_e6_k3_s2_c16_relu6-res_s2_c24_relu6"
            "-dw_k3_s1_c32_relu6-gap",
            "block 4 is not the head conv_k1_s1_c64_relu6-gap",
        ),
        (
            "r16-conv_k3_s2_c16_relu6-mb_e6_k3_s2_c16_relu6-res_s2_c24_relu"
            "-dw_k3_s1_c32_relu6-conv_k1_s1_c64_relu6-gap",
            "block 2 has act relu, not relu6 (stage 1)",
        ),
        ("r16-conv_k3_s2_c16_relu6-mb_k3", "bad block 'mb_k3'"),
        ("", "must be non-empty text"),
    ],
)
def test_encodings_outside_the_space_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(SpaceError) as info:
        small_space().decode(text)
    assert message in str(info.value)


SPACE_TOML = """
[space.stages]
resolutions = [16, 24]
width_multipliers = [0.5, 1.0]
head_width = 64
stem = { width = 16, kernel = 3, stride = 2 }

[[space.stages.stage]]
kind = "mbconv"
depth = [1, 2]
widths = [8, 16]
stride = 2
kernels = [3, 5]
expansions = [3, 6]
se = [false, true]

[[space.stages.stage]]
kind = "res"
depth = [1, 2]
widths = [24]
stride = 2

[[space.stages.stage]]
kind = "dwconv"
depth = 1
widths = [32, 40]
kernels = [3, 7]
"""


def test_the_toml_table_describes_the_same_space() -> None:
    table = tomllib.loads(SPACE_TOML)["space"]["stages"]
    assert StageSpace.from_mapping(table) == small_space()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"stage": [], "pool": True}, "needs at least one [[space.stages.stage]]"),
        ({"stages": [{}]}, "[space.stages] has no key stages (keys: stage, "),
        ({"stage": [{"kind": "conv", "depth": 1}]}, "[[space.stages.stage]] 0 needs 'widths'"),
        (
            {"stage": [{"kind": "conv", "depth": 1, "widths": [8], "kernel": 3}]},
            "[[space.stages.stage]] 0 has no key kernel",
        ),
        (
            {"stage": [{"kind": "res", "depth": [1, 2], "widths": 8, "kernels": [3]}]},
            "[[space.stages.stage]] 0: stage kind 'res' has no kernel gene",
        ),
        (
            {"stage": [{"kind": "res", "depth": 1, "widths": [8]}], "stem": {"widht": 8}},
            "stem has no key widht",
        ),
        ({"stage": [{"kind": "res", "depth": 1, "widths": [8]}], "stem": 3}, "stem must be"),
        ("not a table", "[space.stages] must be a table"),
    ],
)
def test_a_bad_toml_table_is_refused_with_the_key(table: Any, message: str) -> None:
    with pytest.raises(SpaceError) as info:
        StageSpace.from_mapping(table)
    assert message in str(info.value)


def test_stem_false_drops_the_stem() -> None:
    table = {"stage": [{"kind": "res", "depth": 1, "widths": [8]}], "stem": False}
    space = StageSpace.from_mapping(table)
    assert space.stem is None
    assert space.sample(RandomSuggest(0)).encode() == "res_s1_c8_relu6-gap"


def test_mobilenet_v2_035_is_a_point_of_its_stage_space() -> None:
    reference = mobilenet_v2(0.35, cifar=False)
    space = StageSpace(
        stages=tuple(
            StageSpec("mbconv", (n, n), (c,), stride=s, expansions=(t,))
            for t, c, n, s in MOBILENET_V2_STAGES
        ),
        width_multipliers=(0.35,),
        stem=StemSpec(width=32),
        head_width=1280,
    )
    assert space.decode(reference.encoding).encode() == reference.encoding
    assert space.sample(RandomSuggest(0)).encode() == reference.encoding


def test_the_candidate_gives_blocknet_its_channels_first_input() -> None:
    candidate = StageCandidate((), resolution=24)
    assert candidate.input_shape((32, 28, 3)) == (3, 24, 24)
    assert candidate.input_shape((100, 6)) == (6, 24)  # (L, C)
    assert StageCandidate(()).input_shape((100, 6)) == (6, 100)
    with pytest.raises(SpaceError, match=r"\(L, C\) or \(H, W, C\)"):
        candidate.input_shape((4,))


# --- sampled nets build, export and run as torch does ---------------------------------------


def _onnx_equals_torch(net: BlockNet) -> None:
    data = to_onnx(net)
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops
    x = np.random.default_rng(5).standard_normal((1, *net.input_shape)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_onnx(data, x), want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_sampled_image_nets_build_export_and_run_as_torch(seed: int) -> None:
    candidate = small_space().sample(RandomSuggest(seed))
    shape = candidate.input_shape((32, 32, 3))  # resized to the candidate's resolution
    net = BlockNet(candidate.blocks, shape, 10, seed=seed)
    _onnx_equals_torch(with_moved_statistics(net))


ONE_D = StageSpace(
    stages=(
        StageSpec("conv", (1, 2), (8, 16), stride=2, kernels=(3, 5)),
        StageSpec("mbconv", (1, 3), (16, 24), stride=2, kernels=(3, 7), expansions=(1, 4)),
        StageSpec("res", (1, 2), (24, 32), stride=2),
    ),
    width_multipliers=(0.75, 1.0),
    resolutions=(64, 96),
    stem=StemSpec(width=8, kernel=5),
    act="hswish",
)


@pytest.mark.parametrize("seed", range(4))
def test_sampled_1d_nets_on_l_c_windows_build_export_and_run_as_torch(seed: int) -> None:
    candidate = ONE_D.sample(RandomSuggest(seed))
    assert ONE_D.decode(candidate.encode()) == candidate
    shape = candidate.input_shape((128, 6))  # a sensor window: 128 steps of 6 channels
    assert shape == (6, candidate.resolution)
    net = BlockNet(candidate.blocks, shape, 4, seed=seed)
    assert all(len(s_in) == 2 for s_in, _ in net.shapes[:-1])  # (C, L) through the stages
    _onnx_equals_torch(with_moved_statistics(net))
