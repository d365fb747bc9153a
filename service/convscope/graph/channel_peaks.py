"""Pass: per-channel peaks computed in the graph — max |x| over every position of each
sample's channel, an [N, C] output beside the tensor.

Dead-filter counts need, per sample and channel, only whether the channel is zero everywhere,
and a peak of zero says exactly that. Fetched whole for the count, the rectifiers' outputs are
most of a dataset pass's memory and time (EfficientNet-Lite0: 25 MB a sample); their peaks are a
few kilobytes. The peak is a GlobalMaxPool of the tensor itself where the tensor cannot be
negative (a Relu's, a Clip's from 0): onnxruntime keeps that in its blocked channel layout
(NCHWc), where returning the tensors, or Abs + Reshape + ReduceMax, cost several times as much.
A chain of tiny nodes makes onnxruntime compute each peak while its tensor is still in cache
(``_order_chain``); what the peaks cost against the plain forward is measured by
``benchmarks/audit.py`` (the audit's shared pass).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper

from convscope.graph.analysis import producers
from convscope.graph.common import constant_value

# A tensor name never has a space (convscope's own derived names rely on it), so no tensor of
# the model can be named like a peak output.
PEAKS_SUFFIX = " channel peaks"
_CHANNEL_ROWS = "convscope channel peaks shape"
# An output nobody reads: the end of the chain that makes onnxruntime compute each peak while its
# tensor is fresh (``_order_chain``): int64 shapes.
ORDER_OUTPUT = "convscope channel peaks order"
_VECTOR = "convscope channel peaks order/vector shape"


def peaks_name(tensor: str) -> str:
    """The output that carries ``tensor``'s per-channel peaks."""
    return tensor + PEAKS_SUFFIX


def peaks_source(name: str) -> str | None:
    """The tensor whose peaks the output ``name`` carries, or None for a plain tensor."""
    return name[: -len(PEAKS_SUFFIX)] if name.endswith(PEAKS_SUFFIX) else None


def add_channel_peaks(model: onnx.ModelProto, tensors: Iterable[str]) -> onnx.ModelProto:
    """A copy of ``model`` with a ``peaks_name(t)`` output [N, C] per tensor: GlobalMaxPool over
    the positions (of |t| where t may be negative; a tensor of unknown rank, or [N, C], is first
    reshaped to [N, C, positions]), flattened."""
    peaked = onnx.ModelProto()
    peaked.CopyFrom(model)
    graph = peaked.graph
    ranks = _ranks(model)
    made = producers(graph)
    initializers = {init.name: init for init in graph.initializer}
    tensors = list(dict.fromkeys(tensors))
    if any(ranks.get(tensor, 0) < 3 for tensor in tensors):
        graph.initializer.append(helper.make_tensor(_CHANNEL_ROWS, onnx.TensorProto.INT64, [3], [0, 0, -1]))
    after: dict[int, list[onnx.NodeProto]] = {}
    for tensor in tensors:
        position, producer = made.get(tensor, (-1, None))
        never_negative = _never_negative(producer, initializers, made)
        after.setdefault(position, []).extend(_peak_nodes(tensor, never_negative, ranks.get(tensor, 0)))
        graph.output.append(onnx.ValueInfoProto(name=peaks_name(tensor)))
    nodes = [*after.get(-1, [])]  # peaks of graph inputs
    for position, node in enumerate(graph.node):
        nodes += [node, *after.get(position, [])]
    del graph.node[:]
    graph.node.extend(nodes)
    in_graph_order = sorted(tensors, key=lambda tensor: made.get(tensor, (-1, None))[0])
    others = [output.name for output in graph.output if peaks_source(output.name) is None]
    graph.node.extend(_order_chain([peaks_name(tensor) for tensor in in_graph_order], others))
    graph.initializer.append(helper.make_tensor(_VECTOR, onnx.TensorProto.INT64, [1], [-1]))
    graph.output.append(onnx.ValueInfoProto(name=ORDER_OUTPUT))
    return peaked


def _order_chain(peaks: list[str], outputs: list[str]) -> list[onnx.NodeProto]:
    """Nodes that make each peak an input of the next one's bookkeeping, ending in ORDER_OUTPUT,
    which also takes the shape of every other output so that it is the graph's only leaf.

    Why: onnxruntime orders nodes by a depth-first walk back from the graph's leaves (highest
    node index first), not by the node list. With a leaf per peak, every peak ran after the last
    convolution, every rectifier's output stayed alive until then, and the forward's own
    convolutions ran out of cache (on EfficientNet-Lite0 the peaks cost about twice as much as
    with the chain). Walked back from the one leaf, the chain reaches
    its links in graph order, each peak right after its tensor is made; the model's outputs come
    last. Each link is a max over a peak's [N, C] values and a shape: microseconds.
    """
    chain: list[onnx.NodeProto] = []
    shapes = []
    for index, output in enumerate(outputs):
        shapes.append(f"{ORDER_OUTPUT}/output{index}/shape")
        chain.append(helper.make_node("Shape", [output], [shapes[-1]], name=f"{ORDER_OUTPUT}/output{index}/Shape"))
    largest = [f"{ORDER_OUTPUT}/{index}/largest" for index in range(len(peaks))]
    chain += [helper.make_node("ReduceMax", [peak], [top], name=f"{top}/ReduceMax") for peak, top in zip(peaks, largest)]
    # Every link after every ReduceMax: a link's inputs are walked from the highest node index
    # down, so the previous link (and its peak) comes before this link's own peak.
    previous: list[str] = []
    for index, top in enumerate(largest):
        link = f"{ORDER_OUTPUT}/{index}"
        chain.append(helper.make_node("Max", [*previous, top], [link], name=f"{link}/Max"))
        previous = [link]
    # The chain's value joins the shapes as int64 (its own shape is constant, and a constant
    # would be folded away with the chain). The Concat's inputs are walked from the highest node
    # index down: the chain first.
    chain.append(
        helper.make_node("Cast", previous, [f"{ORDER_OUTPUT}/int"], name=f"{ORDER_OUTPUT}/Cast", to=onnx.TensorProto.INT64)
    )
    chain.append(
        helper.make_node("Reshape", [f"{ORDER_OUTPUT}/int", _VECTOR], [f"{ORDER_OUTPUT}/vector"], name=f"{ORDER_OUTPUT}/Reshape")
    )
    chain.append(
        helper.make_node("Concat", [*shapes, f"{ORDER_OUTPUT}/vector"], [ORDER_OUTPUT], name=f"{ORDER_OUTPUT}/Concat", axis=0)
    )
    return chain


def _peak_nodes(tensor: str, never_negative: bool, rank: int) -> list[onnx.NodeProto]:
    output = peaks_name(tensor)
    nodes, source = [], tensor
    if not never_negative:
        nodes.append(helper.make_node("Abs", [source], [f"{output}/abs"], name=f"{output}/Abs"))
        source = f"{output}/abs"
    if rank < 3:  # GlobalMaxPool wants N, C and at least one position axis
        nodes.append(helper.make_node("Reshape", [source, _CHANNEL_ROWS], [f"{output}/rows"], name=f"{output}/Reshape"))
        source = f"{output}/rows"
    return [
        *nodes,
        helper.make_node("GlobalMaxPool", [source], [f"{output}/pooled"], name=f"{output}/GlobalMaxPool"),
        helper.make_node("Flatten", [f"{output}/pooled"], [output], name=f"{output}/Flatten", axis=1),
    ]


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Each tensor's rank, where shape inference knows it."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - unknown ranks take the reshape, which needs none
        inferred = model.graph
    return {
        info.name: len(info.type.tensor_type.shape.dim)
        for info in [*inferred.value_info, *inferred.output, *inferred.input]
        if info.type.tensor_type.HasField("shape")
    }


def _never_negative(
    node: onnx.NodeProto | None, initializers: dict[str, onnx.TensorProto], made: dict[str, tuple[int, onnx.NodeProto]]
) -> bool:
    """A Relu's output, or a Clip's whose lower bound is a constant ≥ 0."""
    if node is None or node.op_type not in ("Relu", "Clip"):
        return False
    if node.op_type == "Relu":
        return True
    if len(node.input) > 1 and node.input[1]:
        low = constant_value(node.input[1], initializers, made)
        return low is not None and float(np.min(low)) >= 0
    low_attribute = next((attribute.f for attribute in node.attribute if attribute.name == "min"), None)  # opset < 11
    return low_attribute is not None and low_attribute >= 0
