"""What several graph passes ask of a graph: the batch dimension's name, the value of a
constant tensor, the names a node's subgraphs read, and the rectifier choices of the
backward pass (checked here once, for every caller)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

BATCH_DIM = "batch"  # the symbolic first dimension every rewritten graph declares

_DEFAULT_DOMAINS = ("", "ai.onnx")
_CONSTANT_ATTRIBUTES = ("value", "value_float", "value_floats", "value_int", "value_ints")


def constant_value(
    name: str,
    initializers: Mapping[str, onnx.TensorProto],
    made_by: Mapping[str, tuple[int, onnx.NodeProto]],
) -> np.ndarray | None:
    """The value of ``name`` when it is fixed in the graph: an initializer, a ``Constant`` node,
    or either behind ``Identity`` nodes (the TorchScript exporter routes shared weights so).
    None for anything computed at run time."""
    while name not in initializers:
        if name not in made_by:
            return None
        _, node = made_by[name]
        if node.domain not in _DEFAULT_DOMAINS:
            return None
        if node.op_type == "Identity":
            name = node.input[0]
        elif node.op_type == "Constant":
            return _constant_attribute(node)
        else:
            return None
    return numpy_helper.to_array(initializers[name])


def _constant_attribute(node: onnx.NodeProto) -> np.ndarray | None:
    for attr in node.attribute:
        if attr.name in _CONSTANT_ATTRIBUTES:
            value = helper.get_attribute_value(attr)
            if attr.name == "value":
                return numpy_helper.to_array(value)
            return np.array(value)
    return None


def subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Names the subgraphs of ``node`` (If, Loop, Scan bodies, nested) read, including the
    outer-scope tensors they use without listing them as inputs."""
    reads: set[str] = set()
    for attr in node.attribute:
        for subgraph in (*([attr.g] if attr.HasField("g") else []), *attr.graphs):
            for inner in subgraph.node:
                reads.update(name for name in inner.input if name)
                reads |= subgraph_reads(inner)
    return reads
