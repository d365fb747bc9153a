"""Read-only facts about an ONNX graph that several passes need."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx
from onnx import helper

# Ops whose output depends only on the *shape* of their input, never its values.
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})
# Ops that draw random numbers: never constant even with constant inputs.
RANDOM_OPS = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"})


def node_label(node: onnx.NodeProto, index: int) -> str:
    """A stable, human-readable name for a node, also when the exporter left it unnamed."""
    return node.name or f"{node.op_type}#{index}"


def initializer_names(graph: onnx.GraphProto) -> set[str]:
    return {init.name for init in graph.initializer} | {s.values.name for s in graph.sparse_initializer}


def runtime_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs a caller feeds: old exporters also list initializers here (treat those as constants)."""
    constants = initializer_names(graph)
    return [value for value in graph.input if value.name not in constants]


def constant_tensors(graph: onnx.GraphProto) -> set[str]:
    """Tensors whose values do not depend on any runtime input: weights, Constant nodes, and
    everything computed only from those (e.g. ``Identity`` over a shared initializer)."""
    constant = initializer_names(graph)
    for node in graph.node:
        if node.op_type in RANDOM_OPS:
            continue
        if all(name == "" or name in constant for name in node.input):
            constant.update(name for name in node.output if name)
    return constant


def data_tensors(graph: onnx.GraphProto) -> list[str]:
    """Tensors that carry the input's *values* (not shape arithmetic), in graph order.

    These are what a user can ask for: activations. ``Shape``/``Size`` outputs and what is
    computed from them alone (``Gather``, ``Concat`` of dims, ...) are bookkeeping, not layers.
    """
    carrying = {value.name for value in runtime_inputs(graph)}
    ordered: list[str] = []
    for node in graph.node:
        if node.op_type in SHAPE_ONLY_OPS:
            continue
        if any(name in carrying for name in node.input):
            for name in node.output:
                if name and name not in carrying:
                    carrying.add(name)
                    ordered.append(name)
    return ordered


def node_attributes(node: onnx.NodeProto) -> dict[str, object]:
    """A node's attributes by name, as Python values (a string attribute as ``str``)."""
    values = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    return {name: value.decode() if isinstance(value, bytes) else value for name, value in values.items()}


def window_pads(
    attrs: Mapping[str, object], extents: Sequence[int], strides: Sequence[int], sizes: Sequence[int | None]
) -> list[tuple[int, int]]:
    """Per spatial axis, the (begin, end) padding of a Conv / pooling window (``extents``:
    dilation·(kernel−1)+1) with ``auto_pad`` resolved: SAME pads to an output of ceil(size /
    stride), which needs the input ``sizes`` unless the stride is 1."""
    mode, rank = attrs.get("auto_pad", "NOTSET"), len(extents)
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for extent, stride, size in zip(extents, strides, sizes, strict=True):
            total = extent - 1 if size is None else max((-(-size // stride) - 1) * stride + extent - size, 0)
            small, large = total // 2, total - total // 2
            pads.append((small, large) if mode == "SAME_UPPER" else (large, small))
        return pads
    if mode == "VALID":
        return [(0, 0)] * rank
    explicit = [int(p) for p in attrs.get("pads", [0] * (2 * rank))]  # type: ignore[attr-defined]
    return [(explicit[i], explicit[i + rank]) for i in range(rank)]


def producers(graph: onnx.GraphProto) -> dict[str, tuple[int, onnx.NodeProto]]:
    """Tensor name → (index, node) that produces it."""
    return {name: (index, node) for index, node in enumerate(graph.node) for name in node.output if name}


def ai_onnx_opset(model: onnx.ModelProto) -> int:
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return opset.version
    return 1
