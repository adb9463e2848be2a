"""Candidate -> ONNX: the direct build (search/onnx_export.py) vs torch.onnx.export.

    python benchmarks/export_speed.py [--repeat 5]

Prints the time per candidate of each way, for three candidates of the digits space and
one 32x32x3 CNN. The dynamo exporter is the slow one (seconds); TorchScript is deprecated.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import warnings

import torch

from search.build import build
from search.onnx_export import to_onnx
from search.space import Candidate

CANDIDATES = [
    "in8x8x1-conv_k3_s1_c16-fc_u64-out10",
    "in8x8x1-dw_k3_s1_c8-pool_k2_s2-conv_k3_s1_c16-out10",
    "in8x8x1-conv_k5_s2_c32-dw_k3_s1_c16-fc_u32-fc_u16-out10",
    "in32x32x3-conv_k3_s1_c16-pool_k2_s2-conv_k3_s1_c32-pool_k2_s2-fc_u128-out10",
]


def timed(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--skip-dynamo", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for enc in CANDIDATES:
        c = Candidate.decode(enc)
        net = build(c).eval()
        h, w, ch = c.input_shape
        x = torch.zeros(1, ch, h, w)
        direct = timed(lambda net=net: to_onnx(net), args.repeat)

        def script(net: torch.nn.Module = net, x: torch.Tensor = x) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(net, (x,), io.BytesIO(), dynamo=False)

        ts = timed(script, args.repeat)
        line = f"{enc}: direct {1000 * direct:.2f} ms, torchscript {1000 * ts:.1f} ms"
        if not args.skip_dynamo:

            def dynamo(net: torch.nn.Module = net, x: torch.Tensor = x) -> None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.onnx.export(net, (x,), dynamo=True, verbose=False)

            line += f", dynamo {timed(dynamo, max(1, args.repeat // 2)):.2f} s"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
