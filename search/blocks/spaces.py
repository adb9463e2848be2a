"""Ready-made stage spaces, as ``references`` holds ready-made nets.

``edge_space()``: MCUNet-like, for 32x32 images on a small CPU: a stride-2 stem of 16, an
inverted-residual stage (1-2 blocks of 16 or 24, kernel 3 or 5, expansion 3 or 6), a
stride-2 inverted-residual stage with optional squeeze-excite (1-3 blocks of 24, 32 or
40), a stride-2 residual stage (1-2 ``res`` blocks of 48 or 64), width multipliers
0.5/0.75/1 and input resolutions 16/24/32: 2.5 million combinations, from a fraction of
a millisecond to a few on a 2-core x86 host. The benchmarks search it
(vs_reference.py, search_quality.py, predictor.py); ``last="mbconv"`` makes the third
stage inverted-residual too, so every stage has a supernet form (the differentiable
strategy's benchmark).
"""

from __future__ import annotations

from typing import Literal

from .stage_spec import StageSpec, StemSpec
from .stages import StageSpace


def edge_space(
    *, fc_units: tuple[int, ...] = (), last: Literal["res", "mbconv"] = "res"
) -> StageSpace:
    """The MCUNet-like space above; ``fc_units``: a hidden fc layer's choices (none: the
    classifier follows the pooling)."""
    third = (
        StageSpec("res", (1, 2), (48, 64), stride=2)
        if last == "res"
        else StageSpec("mbconv", (1, 2), (48, 64), stride=2, kernels=(3, 5), expansions=(3, 6))
    )
    return StageSpace(
        stages=(
            StageSpec("mbconv", (1, 2), (16, 24), kernels=(3, 5), expansions=(3, 6)),
            StageSpec(
                "mbconv",
                (1, 3),
                (24, 32, 40),
                stride=2,
                kernels=(3, 5),
                expansions=(3, 6),
                se=(False, True),
            ),
            third,
        ),
        width_multipliers=(0.5, 0.75, 1.0),
        resolutions=(16, 24, 32),
        stem=StemSpec(width=16, stride=2),
        fc_units=fc_units,
    )
