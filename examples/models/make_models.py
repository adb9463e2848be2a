"""Build the example ONNX models with the onnx helper API (no torch needed).

    python examples/models/make_models.py [OUT_DIR]

Weights are seeded, so the files are the same on every run (their sha256 too).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array.astype(np.float32), name)


def mlp(hidden: int = 128, features: int = 64, classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """[batch, features] -> Gemm -> Relu -> Gemm -> [batch, classes]; a dynamic batch."""
    rng = np.random.default_rng(seed)
    inits = [
        _init("w1", rng.standard_normal((features, hidden)) * 0.1),
        _init("b1", np.zeros(hidden)),
        _init("w2", rng.standard_normal((hidden, classes)) * 0.1),
        _init("b2", np.zeros(classes)),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["hr"], name="relu1"),
        helper.make_node("Gemm", ["hr", "w2", "b2"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    return _finish(graph)


def convnet(size: int = 64, width: int = 32, seed: int = 0) -> onnx.ModelProto:
    """A small CNN on [1, 3, size, size]: conv-relu-pool x3, global pool, fc."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    channels, current = 3, "x"
    for i, out in enumerate((width, width * 2, width * 4)):
        w = rng.standard_normal((out, channels, 3, 3)) * np.sqrt(2.0 / (channels * 9))
        inits += [_init(f"c{i}_w", w), _init(f"c{i}_b", np.zeros(out))]
        nodes += [
            helper.make_node(
                "Conv",
                [current, f"c{i}_w", f"c{i}_b"],
                [f"c{i}"],
                name=f"conv{i}",
                pads=[1, 1, 1, 1],
            ),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"),
            helper.make_node(
                "MaxPool",
                [f"r{i}"],
                [f"p{i}"],
                name=f"pool{i}",
                kernel_shape=[2, 2],
                strides=[2, 2],
            ),
        ]
        channels, current = out, f"p{i}"
    inits += [_init("fc_w", rng.standard_normal((channels, 10)) * 0.1), _init("fc_b", np.zeros(10))]
    nodes += [
        helper.make_node("GlobalAveragePool", [current], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "convnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    return _finish(graph)


def _finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # readable by onnxruntime >= 1.14, as found on older boards
    model.producer_name = "hwnas-bench examples"
    onnx.checker.check_model(model)
    return model


MODELS = {
    "mlp.onnx": lambda: mlp(),
    "convnet.onnx": lambda: convnet(size=64, width=16),
    "convnet_large.onnx": lambda: convnet(size=224, width=48),
}


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, build in MODELS.items():
        onnx.save(build(), out_dir / name)
        print(out_dir / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
