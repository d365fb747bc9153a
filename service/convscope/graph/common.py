"""What several graph passes ask of a graph: the batch dimension's name, the value of a
constant tensor, the names a node's subgraphs read, and the rectifier choices of the
backward pass (checked here once, for every caller)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

import numpy as np
import onnx
from onnx import helper, numpy_helper

from convscope.errors import InvalidArgument

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


class Rectifier(str, Enum):
    """How the backward pass treats rectifier units (Springenberg et al. 2015; Zeiler & Fergus 2014)."""

    PLAIN = "plain"  # the true gradient
    GUIDED = "guided"  # relu(dY)·(Y>0)
    DECONVNET = "deconvnet"  # relu(dY)

    @classmethod
    def parse(cls, value: str) -> Rectifier:
        try:
            return cls(value)
        except ValueError:
            names = tuple(member.value for member in cls)
            raise InvalidArgument(f"rectifier must be one of {names}, not {value!r}") from None


class RectifierScope(str, Enum):
    """Which units the rectifier rule applies to."""

    ALL = "all"  # ReLU and Clip with min 0 (ReLU6)
    RELU = "relu"  # ReLU only, Captum's convention

    @classmethod
    def parse(cls, value: str) -> RectifierScope:
        try:
            return cls(value)
        except ValueError:
            raise InvalidArgument(f"rectifiers must be 'all' or 'relu', not {value!r}") from None
