"""Cascading model-parameter randomization (Adebayo et al., *Sanity checks for saliency maps*,
NeurIPS 2018): re-initialize the layers from the top (the output) down, one more at each step.

Float Conv/Gemm/MatMul weights are drawn as torch's ``reset_parameters`` draws them (Kaiming
uniform with a = √5, i.e. U(±1/√fan_in), bias U(±1/√fan_in)); BatchNormalization gets scale 1
and bias 0 and keeps its running statistics. A pure function ONNX → ONNX.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

PARAMETRIC = {"Conv", "Gemm", "MatMul", "BatchNormalization"}


def layers_from_top(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes with float weight initializers, the output's end first."""
    initializers = {init.name: init for init in model.graph.initializer}
    found = []
    for node in model.graph.node:
        weights = node.input[1] if len(node.input) > 1 else ""
        if node.op_type in PARAMETRIC and weights in initializers and initializers[weights].data_type == onnx.TensorProto.FLOAT:
            found.append(node.name or node.output[0])
    return found[::-1]


def _fan_in(node: onnx.NodeProto, weights: np.ndarray) -> int:
    if node.op_type == "Conv":
        return int(np.prod(weights.shape[1:]))
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return int(weights.shape[1] if trans_b else weights.shape[0])
    return int(weights.shape[0])  # MatMul: [in, out]


def randomized(model: onnx.ModelProto, layers: int, seed: int = 0) -> onnx.ModelProto:
    """A copy of ``model`` with its top ``layers`` parametric layers re-initialized."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    chosen = set(layers_from_top(copy)[:layers])
    initializers = {init.name: init for init in copy.graph.initializer}
    rng = np.random.default_rng(seed)
    for node in copy.graph.node:
        if (node.name or node.output[0]) not in chosen:
            continue
        if node.op_type == "BatchNormalization":
            for name, value in ((node.input[1], 1.0), (node.input[2], 0.0)):
                current = numpy_helper.to_array(initializers[name])
                initializers[name].CopyFrom(numpy_helper.from_array(np.full_like(current, value), name))
            continue
        weights = numpy_helper.to_array(initializers[node.input[1]])
        bound = 1 / np.sqrt(max(1, _fan_in(node, weights)))
        initializers[node.input[1]].CopyFrom(
            numpy_helper.from_array(rng.uniform(-bound, bound, weights.shape).astype(weights.dtype), node.input[1])
        )
        if len(node.input) > 2 and node.input[2] in initializers:
            bias = numpy_helper.to_array(initializers[node.input[2]])
            initializers[node.input[2]].CopyFrom(
                numpy_helper.from_array(rng.uniform(-bound, bound, bias.shape).astype(bias.dtype), node.input[2])
            )
    return copy
