"""Where a local change of the input travels through the early, spatially local part of a CNN.

Incremental inference (Nakandala et al., "Incremental and approximate inference for faster
occlusion-based deep CNN explanations", SIGMOD 2019): an occluder changes only the part of each
feature map inside its receptive-field footprint, so the early layers need recomputing only
there.  This module holds the read-only facts that make that possible on an ONNX graph:

* :func:`early_path` walks the graph from the input through ops whose output at a position
  depends on a bounded window of their input (Conv, MaxPool, AveragePool — kernel, stride,
  pads, dilation — and elementwise ops, Concat over channels), and lists the *cuts*: tensors
  every path from the input to the scored output passes through, with only local ops before.
* :func:`changed_interval` pushes an input box forward, per axis: which rows/columns of each
  tensor can differ from the unoccluded run.
All of it is pure: an ONNX graph and tensor shapes in, plain data out.  ``stages.py`` plans
the stages that recompute only the changed part; ``submodels.py`` builds their models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from convscope.graph.analysis import constant_tensors, node_attributes, node_label, window_pads
from convscope.graph.common import subgraph_reads

# Elementwise ops of one data input (plus constant parameters that do not vary over space).
UNARY_OPS = frozenset(
    {
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Elu",
        "Selu",
        "Celu",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
        "Softplus",
        "Softsign",
        "Exp",
        "Log",
        "Abs",
        "Neg",
        "Sqrt",
        "Reciprocal",
        "Erf",
        "Gelu",
        "Mish",
        "Floor",
        "Ceil",
        "Round",
        "Sign",
        "Sin",
        "Cos",
        "Identity",
        "Dropout",
        "ThresholdedRelu",
        "Shrink",
        "Clip",
        "BatchNormalization",
        "LRN",
    }
)
# Elementwise ops with numpy broadcasting: any mix of data inputs (same frame) and constants.
BROADCAST_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean"})
WINDOW_OPS = frozenset({"Conv", "MaxPool", "AveragePool"})
# Constant parameters of these ops are per channel by definition, not numpy-broadcast.
PER_CHANNEL_OPS = frozenset({"BatchNormalization", "Clip"})


@dataclass(frozen=True)
class Axis:
    """One spatial axis of a sliding-window op."""

    extent: int  # dilated kernel: dilation * (kernel - 1) + 1
    stride: int
    pad_begin: int
    pad_end: int
    ceil_mode: bool = False

    def output_size(self, size: int) -> int:
        span = size + self.pad_begin + self.pad_end - self.extent
        if not self.ceil_mode:
            return span // self.stride + 1
        count = -(-span // self.stride) + 1
        # The last window must start inside the input or its begin padding (ONNX, torch).
        if (count - 1) * self.stride >= size + self.pad_begin:
            count -= 1
        return count

    def changed(self, lo: np.ndarray, hi: np.ndarray, out_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Output rows that can change when input rows [lo, hi) change (empty stays empty)."""
        new_lo = np.maximum(-((-(lo + self.pad_begin - self.extent + 1)) // self.stride), 0)
        new_hi = np.minimum((hi - 1 + self.pad_begin) // self.stride + 1, out_size)
        empty = (hi <= lo) | (new_hi <= new_lo)
        return np.where(empty, 0, new_lo), np.where(empty, 0, new_hi)


@dataclass(frozen=True)
class LocalNode:
    """A node of the local part: which inputs carry data, and its window geometry if any."""

    index: int
    op_type: str
    label: str
    output: str
    data_inputs: tuple[tuple[int, str], ...]  # (input slot, tensor)
    axes: tuple[Axis, Axis] | None = None  # sliding-window ops only
    macs: int = 0  # multiply-adds per output element


@dataclass
class EarlyPath:
    """The spatially local part of a graph, seen from its input, and its cuts."""

    input: str
    nodes: dict[int, LocalNode]  # by node index, in graph order
    sizes: dict[str, tuple[int, int]]  # spatial size of every local tensor (and the input)
    channels: dict[str, int]
    cuts: tuple[str, ...]  # in graph order
    ancestors: dict[str, frozenset[int]]  # local node indices that compute each local tensor
    stop: str  # why the local part ends where it does


def constant_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """Shapes of initializers, Constant outputs and what Identity passes on (shared weights)."""
    shapes: dict[str, tuple[int, ...]] = {init.name: tuple(init.dims) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = tuple(attr.t.dims)
                elif attr.name in ("value_float", "value_int"):
                    shapes[node.output[0]] = ()
                elif attr.name in ("value_floats", "value_ints"):
                    shapes[node.output[0]] = (len(helper.get_attribute_value(attr)),)
        elif node.op_type == "Identity" and node.input and node.input[0] in shapes:
            shapes[node.output[0]] = shapes[node.input[0]]
    return shapes


def consumers(graph: onnx.GraphProto) -> dict[str, set[int]]:
    """Tensor → indices of nodes that read it, counting names used inside subgraphs (If, Loop)."""
    readers: dict[str, set[int]] = {}
    for index, node in enumerate(graph.node):
        for name in {name for name in node.input if name} | subgraph_reads(node):
            readers.setdefault(name, set()).add(index)
    return readers


def _window_axes(attrs: Mapping[str, object], kernel: Sequence[int], size: tuple[int, int]) -> tuple[Axis, Axis]:
    strides = list(attrs.get("strides", [1, 1]))  # type: ignore[call-overload]
    dilations = list(attrs.get("dilations", [1, 1]))  # type: ignore[call-overload]
    extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    pads = window_pads(attrs, extents, strides, size)
    ceil_mode = bool(attrs.get("ceil_mode", 0))
    y, x = (Axis(extents[axis], strides[axis], *pads[axis], ceil_mode) for axis in range(2))
    return y, x


def _spatially_constant(shape: tuple[int, ...] | None) -> bool:
    """A constant operand that broadcasts against [N, C, H, W] without varying over H or W."""
    if shape is None or len(shape) > 4:
        return False
    padded = (1,) * (4 - len(shape)) + tuple(shape)
    return padded[0] == 1 and padded[2] == 1 and padded[3] == 1


def _classify(
    node: onnx.NodeProto,
    index: int,
    data: list[tuple[int, str]],
    constants: Mapping[str, tuple[int, ...]],
    shapes: Mapping[str, tuple[int, ...]],
    used: set[str],
) -> LocalNode | str:
    """The node as a LocalNode, or why it is not spatially local."""
    label = node_label(node, index)
    op = node.op_type
    why = f"{op} node {label!r}"
    if node.domain not in ("", "ai.onnx"):
        return f"{why} is a custom op"
    outputs = [name for name in node.output if name]
    if len([name for name in outputs if name in used]) != 1 or not outputs or outputs[0] not in used:
        return f"{why} has more than one used output"
    output = outputs[0]
    out_shape = shapes.get(output)
    if out_shape is None or len(out_shape) != 4 or out_shape[0] != 1:
        return f"{why} does not produce an [N, C, H, W] map"
    for _, name in data:
        shape = shapes.get(name)
        if shape is None or len(shape) != 4 or shape[2:] != shapes[data[0][1]][2:]:
            return f"{why} combines maps of different sizes"
    attrs = node_attributes(node)
    in_size = tuple(shapes[data[0][1]][2:])
    out_size = tuple(out_shape[2:])
    local = LocalNode(index, op, label, output, tuple(data))
    if op in WINDOW_OPS:
        if len(data) != 1 or data[0][0] != 0:
            return f"{why} takes its weights at run time"
        if op == "Conv":
            weight = constants.get(node.input[1])
            if weight is None or len(weight) != 4:
                return f"{why} is not a 2-D convolution with constant weights"
            kernel = list(attrs.get("kernel_shape", weight[2:]))  # type: ignore[call-overload]
            macs = int(weight[1] * weight[2] * weight[3])
        else:
            kernel = list(attrs.get("kernel_shape", []))  # type: ignore[call-overload]
            if len(kernel) != 2:
                return f"{why} is not a 2-D pooling"
            macs = int(kernel[0] * kernel[1])
        axes = _window_axes(attrs, kernel, (int(in_size[0]), int(in_size[1])))
        expected = tuple(axis.output_size(int(size)) for axis, size in zip(axes, in_size))
        if expected != out_size:
            return f"{why}: its output size {list(out_size)} differs from the expected {list(expected)}"
        return LocalNode(index, op, label, output, tuple(data), axes, macs)
    if out_size != in_size:
        return f"{why} changes the map size"
    if op in UNARY_OPS or op in BROADCAST_OPS:
        if op in UNARY_OPS and len(data) != 1:
            return f"{why} takes its parameters at run time"
        if op == "BatchNormalization" and attrs.get("training_mode", 0):
            return f"{why} is in training mode"
        for slot, name in enumerate(node.input):
            if not name or any(slot == s for s, _ in data) or op in PER_CHANNEL_OPS:
                continue
            if not _spatially_constant(constants.get(name)):
                return f"{why} has a constant operand that varies over the map"
        return local
    if op == "Concat":
        axis = int(attrs.get("axis", 0))  # type: ignore[call-overload]
        if axis not in (1, -3) or len(data) != len([name for name in node.input if name]):
            return f"{why} does not concatenate maps along channels"
        return local
    return f"{why} is not spatially local"


def early_path(model: onnx.ModelProto, input_name: str, output: str, shapes: Mapping[str, tuple[int, ...]]) -> EarlyPath:
    """The local part of ``model`` from ``input_name``, and the cuts before ``output``.

    ``shapes`` holds the batch-1 shape of the input and of every data tensor (from a probe run).
    A cut is a tensor T such that every path from the input to ``output`` passes through T and
    everything computing T is local: a recomputed region of T can be spliced into T's cached
    value and the rest of the graph run from there.
    """
    graph = model.graph
    constants = constant_tensors(graph)
    weight_shapes = constant_shapes(graph)
    readers = consumers(graph)
    used = set(readers) | {o.name for o in graph.output}
    local: set[str] = {input_name}
    nodes: dict[int, LocalNode] = {}
    stop = ""
    for index, node in enumerate(graph.node):
        data = [(slot, name) for slot, name in enumerate(node.input) if name and name not in constants]
        if not any(name in local for _, name in data):
            continue
        if not all(name in local for _, name in data):
            classified: LocalNode | str = f"{node.op_type} node {node_label(node, index)!r} mixes in a non-local map"
        else:
            classified = _classify(node, index, data, weight_shapes, shapes, used)
        if isinstance(classified, str):
            stop = stop or classified
            continue
        nodes[index] = classified
        local.add(classified.output)

    ancestors: dict[str, frozenset[int]] = {input_name: frozenset()}
    for index, item in nodes.items():
        found = {index}
        for _, name in item.data_inputs:
            found |= ancestors[name]
        ancestors[item.output] = frozenset(found)

    reaching = _reaching(graph, output)
    cuts = []
    for item in nodes.values():
        tensor = item.output
        if tensor == output or tensor not in reaching:
            continue
        inside = ancestors[tensor]
        closed = readers.get(input_name, set()) <= inside and all(
            readers.get(nodes[i].output, set()) <= inside and nodes[i].output != output
            for i in inside
            if nodes[i].output != tensor
        )
        if closed:
            cuts.append(tensor)
    sizes = {name: (int(shapes[name][2]), int(shapes[name][3])) for name in local}
    channels = {name: int(shapes[name][1]) for name in local}
    if not stop:
        stop = "every op on the way to the output is local"
    return EarlyPath(input_name, nodes, sizes, channels, tuple(cuts), ancestors, stop)


def _reaching(graph: onnx.GraphProto, output: str) -> set[str]:
    """Tensors that ``output`` depends on."""
    made_by = {name: node for node in graph.node for name in node.output if name}
    seen: set[str] = set()
    pending = [output]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        node = made_by.get(name)
        if node is not None:
            pending.extend(n for n in node.input if n)
    return seen


def changed_interval(path: EarlyPath, axis: int, lo: np.ndarray, hi: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per local tensor, the rows (axis 0) or columns (axis 1) that can change, for each input
    interval [lo, hi) (arrays of equal shape): pushed forward through the local nodes."""
    intervals = {path.input: (np.asarray(lo, np.int64), np.asarray(hi, np.int64))}
    for item in path.nodes.values():
        ins = [intervals[name] for _, name in item.data_inputs]
        if item.axes is not None:
            out_size = path.sizes[item.output][axis]
            intervals[item.output] = item.axes[axis].changed(ins[0][0], ins[0][1], out_size)
            continue
        lo_, hi_ = ins[0]
        for other_lo, other_hi in ins[1:]:
            empty, other_empty = hi_ <= lo_, other_hi <= other_lo
            lo_ = np.where(empty, other_lo, np.where(other_empty, lo_, np.minimum(lo_, other_lo)))
            hi_ = np.where(empty, other_hi, np.where(other_empty, hi_, np.maximum(hi_, other_hi)))
        intervals[item.output] = (lo_, hi_)
    return intervals


# ----------------------------------------------------------------------------------- stage plans
#
# A stage runs the graph's own nodes between two cuts on a fixed-size crop of the source tensor,
# with the ops' own padding.  A crop lies inside its tensor and starts at a multiple of the
# stage's stride, so every output of the crop lines up with an output of the whole map; an output
# is *exact* (equal to the whole map's) when its window reads only exact inputs, or reaches past
# a crop edge that is also the tensor's edge (there the op pads the crop as it pads the map).
# Exactness shrinks from the crop's inner edges by each op's halo; the stage's crop is chosen
# large enough that, for every occluder position, some placement of the crop makes the changed
# region of the target exact.  No masks, no slices: the stage model is the original subgraph.
