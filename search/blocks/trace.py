"""Analytic cost: params, MACs and the elements live at each ONNX node a block writes,
counted from a trace of its dataflow (element counts only, no torch)."""

from __future__ import annotations

from dataclasses import dataclass

FLOAT_BYTES = 4


@dataclass(frozen=True)
class BlockCost:
    """Analytic cost of a block (or of a chain of them: ``a + b``), batch 1, float32.

    ``params`` count conv and linear weights and biases with BatchNorm folded (a conv
    followed by BN gains a bias, BN itself has none left); ``macs`` are the conv and linear
    multiply-accumulates; ``live[i]`` is the number of elements live while the block's i-th
    ONNX node runs (its inputs, its output, and anything held for a later node, such as a
    residual's saved input). Constants (weights, Clip bounds) are not activations.
    """

    params: int = 0
    macs: int = 0
    live: tuple[int, ...] = ()

    def __add__(self, other: BlockCost) -> BlockCost:
        return BlockCost(self.params + other.params, self.macs + other.macs, self.live + other.live)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def peak_activation_bytes(self) -> int:
        return max(self.live, default=0) * FLOAT_BYTES


class Trace:
    """The dataflow of the nodes a block emits, as element counts only, so its cost can say
    what is live at each node without building anything. Tensor 0 is the block's input."""

    input = 0

    def __init__(self, input_elements: int) -> None:
        self._sizes = [input_elements]
        self._inputs: list[tuple[int, ...]] = []

    def node(self, *inputs: int, out: int) -> int:
        """A node reading ``inputs`` (tensor ids) and writing ``out`` elements; its output's id."""
        self._inputs.append(inputs)
        self._sizes.append(out)
        return len(self._sizes) - 1

    def live(self, output: int) -> tuple[int, ...]:
        """Elements live at each node; ``output`` (the block's result) outlives the block."""
        nodes = len(self._inputs)
        born = [-1, *range(nodes)]  # tensor t > 0 is written by node t - 1
        last = list(born)
        for i, inputs in enumerate(self._inputs):
            for t in inputs:
                last[t] = max(last[t], i)
        last[output] = nodes
        return tuple(
            sum(size for t, size in enumerate(self._sizes) if born[t] <= i <= last[t])
            for i in range(nodes)
        )


def trace_activation(trace: Trace, x: int, act: str | None, elements: int) -> int:
    """Relu and relu6 (Clip) are one node; hswish is HardSigmoid then Mul with its input."""
    if act is None:
        return x
    if act == "hswish":
        gate = trace.node(x, out=elements)
        return trace.node(x, gate, out=elements)
    return trace.node(x, out=elements)


def trace_conv(trace: Trace, x: int, act: str | None, elements: int) -> int:
    """A conv (BN folded into it) and its activation."""
    return trace_activation(trace, trace.node(x, out=elements), act, elements)
