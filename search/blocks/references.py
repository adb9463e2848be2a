"""Hand-designed reference nets, written in the block encoding.

- ``resnet8``: the ResNet-8 of MLPerf Tiny's image classification task (CIFAR-10, 32x32x3):
  a 3x3 conv of 16, three basic residual blocks of 16 (stride 1), 32 and 64 (stride 2),
  global average pooling, and the net's linear classifier. MLPerf's 8x8 average pool over
  the last 8x8 map is ``gap`` here; its 1x1 projections have no BatchNorm there and a folded
  one here, which changes no count after folding.
- ``mobilenet_v2(width)``: MobileNetV2's stage table (t, c, n, s) with every width times
  ``width`` rounded to a multiple of 8 by ``make_divisible``, the first conv's 32 channels too,
  the last 1x1 conv kept at 1280 for widths <= 1 (as the reference implementations do),
  relu6 throughout. ``cifar=True`` is the usual CIFAR adaptation for 32x32 inputs (as in
  kuangliu/pytorch-cifar): the first conv and the second stage (24 channels) take stride 1
  instead of 2, so the net downsamples by 8 (to 4x4) instead of 32.

The classifier is not a block: ``BlockNet`` always appends flatten + linear.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Block, make_divisible
from .chain import decode_blocks

#: MobileNetV2's inverted residual stages: expansion t, channels c, repeats n, first stride s
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


@dataclass(frozen=True)
class Reference:
    name: str
    encoding: str  #: the blocks' tokens joined by ``-``
    input_shape: tuple[int, ...]  #: channels-first (C, H, W)
    num_classes: int

    @property
    def blocks(self) -> tuple[Block, ...]:
        return decode_blocks(self.encoding)


def resnet8(num_classes: int = 10) -> Reference:
    tokens = (
        "conv_k3_s1_c16_relu",
        "res_s1_c16_relu",
        "res_s2_c32_relu",
        "res_s2_c64_relu",
        "gap",
    )
    return Reference("resnet8", "-".join(tokens), (3, 32, 32), num_classes)


def mobilenet_v2(
    width: float = 0.35,
    *,
    num_classes: int = 10,
    cifar: bool = True,
    input_shape: tuple[int, ...] = (3, 32, 32),
) -> Reference:
    tokens = [f"conv_k3_s{1 if cifar else 2}_c{make_divisible(32 * width)}_relu6"]
    for i, (expansion, channels, repeats, stride) in enumerate(MOBILENET_V2_STAGES):
        first_stride = 1 if cifar and i == 1 else stride
        out = make_divisible(channels * width)
        for j in range(repeats):
            tokens.append(f"mb_e{expansion}_k3_s{first_stride if j == 0 else 1}_c{out}_relu6")
    last = make_divisible(1280 * max(1.0, width))
    tokens += [f"conv_k1_s1_c{last}_relu6", "gap"]
    name = f"mobilenet_v2_{width:g}" + ("_cifar" if cifar else "")
    return Reference(name, "-".join(tokens), input_shape, num_classes)


REFERENCES = {"resnet8": resnet8, "mobilenet_v2": mobilenet_v2}
