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
* :func:`plan_stage` / :func:`plan_stages` split the local part at cuts into stages.  A stage
  runs the graph's own nodes on a fixed-size crop of its source tensor, with the ops' own
  padding; crops lie inside their tensor and start at multiples of the stage's stride, so crop
  outputs line up with whole-map outputs.  Outputs near a crop edge that is not the tensor's
  edge are wrong (they saw padding instead of neighbours): the plan tracks, per placement, the
  *exact* zone — shrunk by each op's halo (kernel, stride, pads, dilation) — and picks crops
  large enough that every changed region is exact.  A cost model chooses the stages.

All of it is pure: an ONNX graph and tensor shapes in, plain data out.  ``graph/incremental/submodels.py``
builds the stage and tail models from the plans; ``methods/occlusion_engine.py`` runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from convscope.graph.analysis import constant_tensors, node_attributes, node_label, window_pads
from convscope.graph.common import subgraph_reads

# Elementwise ops of one data input (plus constant parameters that do not vary over space).
UNARY_OPS = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
    "Softplus", "Softsign", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Erf", "Gelu", "Mish",
    "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Identity", "Dropout", "ThresholdedRelu", "Shrink",
    "Clip", "BatchNormalization", "LRN",
})
# Elementwise ops with numpy broadcasting: any mix of data inputs (same frame) and constants.
BROADCAST_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean"})
WINDOW_OPS = frozenset({"Conv", "MaxPool", "AveragePool"})
# Constant parameters of these ops are per channel by definition, not numpy-broadcast.
PER_CHANNEL_OPS = frozenset({"BatchNormalization", "Clip"})

# Cost model, in multiply-add equivalents per output element: a sliding-window op costs its
# multiply-adds plus the memory traffic every op pays; copying a tensor in numpy costs about as
# much per element as a memory-bound op.
ELEMENT_COST = 8.0
COPY_COST = 8.0


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


def _constant_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
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


def early_path(
    model: onnx.ModelProto, input_name: str, output: str, shapes: Mapping[str, tuple[int, ...]]
) -> EarlyPath:
    """The local part of ``model`` from ``input_name``, and the cuts before ``output``.

    ``shapes`` holds the batch-1 shape of the input and of every data tensor (from a probe run).
    A cut is a tensor T such that every path from the input to ``output`` passes through T and
    everything computing T is local: a recomputed region of T can be spliced into T's cached
    value and the rest of the graph run from there.
    """
    graph = model.graph
    constants = constant_tensors(graph)
    constant_shapes = _constant_shapes(graph)
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
            classified = _classify(node, index, data, constant_shapes, shapes, used)
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
    for index, item in nodes.items():
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

BORDER = 1 << 40  # an exact zone that reaches past the edge of its tensor


@dataclass(frozen=True)
class StagePlan:
    """Recompute crops of ``target`` from crops of ``source`` ([N, C, *source_size])."""

    source: str
    target: str
    nodes: tuple[int, ...]
    pads: tuple[tuple[int, tuple[int, int, int, int]], ...]  # explicit pads of the window ops (auto_pad resolved)
    source_size: tuple[int, int]
    source_channels: int
    target_size: tuple[int, int]
    target_channels: int
    stride: tuple[int, int]  # source pixels per target pixel
    window: tuple[int, int]  # size of the exact window of the target passed on (≥ every changed region)
    cost: float = field(default=0.0, compare=False)


@dataclass(frozen=True, eq=False)
class Placement:
    """Per occluder row (axis 0) or column (axis 1): where the stage's crop goes."""

    start: np.ndarray  # first row of the source crop (a multiple of the stride)
    window: np.ndarray  # first row of the exact window in the target


class PlanError(Exception):
    """A stage cannot be planned (its branches disagree, or no crop fits)."""


def _stage_nodes(path: EarlyPath, source: str, target: str) -> list[int]:
    return sorted(path.ancestors[target] - path.ancestors[source])


def _along(
    path: EarlyPath, nodes: Sequence[int], source: str, start: int, window: Callable[[LocalNode, int], int], disagree: str
) -> dict[str, int]:
    """A per-tensor number carried from ``source`` (``start``) through the stage's ``nodes``:
    mapped by ``window(node, number)`` at sliding-window ops, unchanged elsewhere; branches that
    meet must agree (``disagree`` says how they differed)."""
    values = {source: start}
    for index in nodes:
        item = path.nodes[index]
        found = {values[name] for _, name in item.data_inputs}
        if len(found) != 1:
            raise PlanError(f"branches meeting at {item.label!r} {disagree}")
        value = found.pop()
        values[item.output] = window(item, value) if item.axes is not None else value
    return values


def _stride(path: EarlyPath, nodes: Sequence[int], source: str, target: str, axis: int) -> int:
    return _along(path, nodes, source, 1, lambda item, step: step * item.axes[axis].stride, "move with different strides")[target]


def _crop_sizes(path: EarlyPath, nodes: Sequence[int], source: str, axis: int, length: int) -> dict[str, int]:
    def window(item: LocalNode, size: int) -> int:
        size = item.axes[axis].output_size(size)
        if size < 1:
            raise PlanError(f"a crop of {length} is too small for {item.label!r}")
        return size

    return _along(path, nodes, source, length, window, "differ in crop size")


def _exact(
    path: EarlyPath,
    nodes: Sequence[int],
    source: str,
    target: str,
    axis: int,
    starts: np.ndarray,
    length: int,
    *,
    borders: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """For source crops [start, start + length): the exact zone of the target's crop, BORDER-
    extended where it reaches a tensor edge that is also a crop edge (``borders=False``: as if
    the crops never touched an edge)."""
    size = path.sizes[source][axis]
    lo = np.where(borders & (starts == 0), -BORDER, starts)
    hi = np.where(borders & (starts + length == size), BORDER, starts + length)
    zones = {source: (lo, hi)}
    for index in nodes:
        item = path.nodes[index]
        ins = [zones[name] for _, name in item.data_inputs]
        lo, hi = ins[0]
        for other_lo, other_hi in ins[1:]:
            lo, hi = np.maximum(lo, other_lo), np.minimum(hi, other_hi)
        if item.axes is not None:
            geo = item.axes[axis]
            lo = np.where(lo <= -BORDER, -BORDER, -((-(lo + geo.pad_begin)) // geo.stride))
            hi = np.where(hi >= BORDER, BORDER, (hi + geo.pad_begin - geo.extent) // geo.stride + 1)
        zones[item.output] = (lo, hi)
    return zones[target]


def _place_axis(
    path: EarlyPath, nodes: Sequence[int], source: str, target: str, axis: int, changed: tuple[np.ndarray, np.ndarray]
) -> tuple[int, int, int, int, Placement]:
    """The smallest crop (along one axis) that makes every changed region exact somewhere, and
    where to put it.  Returns (source crop, target crop, stride, window, placement).

    Inside a tensor, a crop loses a fixed halo at each end (crop starts are multiples of the
    stride, and all crop lengths of a stage agree modulo it); at a tensor edge it loses nothing.
    So a crop whose exact part is as long as the largest changed region fits every region: put
    it ``halo`` before the region, clamped into the tensor."""
    stride = _stride(path, nodes, source, target, axis)
    size, target_size = path.sizes[source][axis], path.sizes[target][axis]
    r0, r1 = changed
    nonempty = r1 > r0
    r0, r1 = np.where(nonempty, r0, 0), np.where(nonempty, r1, 1)
    window = int((r1 - r0).max())
    smallest = size - (size - 1) // stride * stride  # lengths ≡ size (mod stride), so crops can end at the edge
    while True:
        try:
            base = _crop_sizes(path, nodes, source, axis, smallest)[target]
            break
        except PlanError:
            smallest += stride
            if smallest > size:
                raise PlanError(f"{target!r} cannot be computed from a crop of {source!r}") from None
    probe_start = np.array([stride * (size + 1)])  # far from any edge, aligned
    lo, hi = _exact(path, nodes, source, target, axis, probe_start, smallest + stride * size, borders=False)
    first = int(probe_start[0]) // stride
    halo_before = int(lo[0]) - first
    halo_after = first + base + size - int(hi[0])
    length = smallest + stride * max(0, window + halo_before + halo_after - base)
    length = min(length, size)
    out = _crop_sizes(path, nodes, source, axis, length)[target]
    last = (size - length) // stride
    slot = np.clip(r0 - halo_before, 0, last)
    lo, hi = _exact(path, nodes, source, target, axis, slot * stride, length)
    lo, hi = np.clip(lo, slot, slot + out), np.clip(hi, slot, slot + out)
    lo, hi = np.clip(lo, 0, target_size), np.clip(hi, 0, target_size)
    if not ((lo <= r0) & (hi >= r1) & (hi - lo >= window)).all():
        raise PlanError(f"crops of {source!r} leave part of a changed region of {target!r} inexact")
    return length, out, stride, window, Placement(slot * stride, np.clip(r0, lo, hi - window))


def _window_pads(path: EarlyPath, nodes: Sequence[int]) -> tuple[tuple[int, tuple[int, int, int, int]], ...]:
    pads = []
    for index in nodes:
        axes = path.nodes[index].axes
        if axes is not None:
            pads.append((index, (axes[0].pad_begin, axes[1].pad_begin, axes[0].pad_end, axes[1].pad_end)))
    return tuple(pads)


def plan_stage(
    path: EarlyPath,
    source: str,
    target: str,
    changed: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> tuple[StagePlan, tuple[Placement, Placement]]:
    """Plan the stage from cut ``source`` (or the input) to cut ``target``, given the changed
    rows and columns of ``target`` per occluder row and column (``changed_interval``)."""
    nodes = _stage_nodes(path, source, target)
    axes = [_place_axis(path, nodes, source, target, axis, changed[axis]) for axis in range(2)]
    lengths = (axes[0][0], axes[1][0])
    sizes = [_crop_sizes(path, nodes, source, axis, lengths[axis]) for axis in range(2)]
    cost = 0.0
    for index in nodes:
        item = path.nodes[index]
        elements = path.channels[item.output] * sizes[0][item.output] * sizes[1][item.output]
        cost += elements * (item.macs + ELEMENT_COST)
    window = (axes[0][3], axes[1][3])
    channels, target_channels = path.channels[source], path.channels[target]
    # Gather the crop, paste the previous window into it, take this stage's window out.
    cost += COPY_COST * (2 * channels * lengths[0] * lengths[1] + target_channels * window[0] * window[1])
    plan = StagePlan(
        source=source,
        target=target,
        nodes=tuple(nodes),
        pads=_window_pads(path, nodes),
        source_size=lengths,
        source_channels=channels,
        target_size=(axes[0][1], axes[1][1]),
        target_channels=target_channels,
        stride=(axes[0][2], axes[1][2]),
        window=window,
        cost=cost,
    )
    return plan, (axes[0][4], axes[1][4])


def full_cost(path: EarlyPath, indices: frozenset[int] | set[int]) -> float:
    """What the nodes cost on whole maps, per sample (same units as StagePlan.cost)."""
    total = 0.0
    for index in indices:
        item = path.nodes[index]
        height, width = path.sizes[item.output]
        total += path.channels[item.output] * height * width * (item.macs + ELEMENT_COST)
    return total


@dataclass(frozen=True, eq=False)
class IncrementalPlan:
    stages: tuple[StagePlan, ...]
    placements: tuple[tuple[Placement, Placement], ...]
    saving: float  # estimated cost saved per sample, in the units of StagePlan.cost
    recomputed: float  # what the stages and the splice cost, per sample
    replaced: float  # what the same nodes cost on whole maps


Changed = Mapping[str, tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]
# A stage spans at most this many candidate cuts (longer ones accumulate halo; planning stays fast).
MAX_STAGE_SPAN = 8


def _candidate_cuts(path: EarlyPath, changed: Changed) -> list[str]:
    """Cuts worth ending a stage at: some part of the map stays unchanged, and the next cut is
    not just an elementwise op away (then splice after it: same crop, one op less to redo)."""
    cuts = [cut for cut in path.cuts if cut in changed]
    kept = []
    for position, cut in enumerate(cuts):
        (y0, y1), (x0, x1) = changed[cut]
        height, width = path.sizes[cut]
        if int((y1 - y0).max()) >= height and int((x1 - x0).max()) >= width:
            continue
        following = cuts[position + 1] if position + 1 < len(cuts) else None
        if following is not None:
            between = path.ancestors[following] - path.ancestors[cut]
            if all(path.nodes[i].axes is None and len(path.nodes[i].data_inputs) == 1 for i in between):
                continue
        kept.append(cut)
    return kept


def plan_stages(path: EarlyPath, changed: Changed) -> IncrementalPlan | None:
    """The cheapest chain of stages input → cut → … → cut by the cost model, or None when no
    chain saves anything.  ``changed[tensor]``: its changed rows and columns per occluder row and
    column (for the input: the boxes themselves)."""
    cuts = _candidate_cuts(path, changed)
    best: dict[str, tuple[float, tuple[tuple[StagePlan, tuple[Placement, Placement]], ...]]] = {}
    for j, target in enumerate(cuts):
        options = []
        earlier = [(cuts[i], best[cuts[i]]) for i in range(max(0, j - MAX_STAGE_SPAN), j) if cuts[i] in best]
        for source, before in [(path.input, (0.0, ()))] + earlier:
            try:
                stage = plan_stage(path, source, target, changed[target])
            except PlanError:
                continue
            options.append((before[0] + stage[0].cost, (*before[1], stage)))
        if options:
            best[target] = min(options, key=lambda option: option[0])
    choice: IncrementalPlan | None = None
    for target, (cost, stages) in best.items():
        height, width = path.sizes[target]
        splice = COPY_COST * path.channels[target] * height * width
        replaced = full_cost(path, path.ancestors[target])
        saving = replaced - cost - splice
        if saving > 0 and (choice is None or saving > choice.saving):
            choice = IncrementalPlan(tuple(s for s, _ in stages), tuple(p for _, p in stages), saving, cost + splice, replaced)
    return choice


def graph_cost(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> float:
    """The whole graph's cost per sample, in the units of StagePlan.cost (tensors of unknown
    shape count as free)."""
    weights = _constant_shapes(model.graph)
    total = 0.0
    for node in model.graph.node:
        shape = shapes.get(node.output[0]) if node.output else None
        if shape is None:
            continue
        macs = 0
        if node.op_type == "Conv" and node.input[1] in weights:
            macs = int(np.prod(weights[node.input[1]][1:]))
        elif node.op_type in ("Gemm", "MatMul") and shapes.get(node.input[0]):
            macs = int(shapes[node.input[0]][-1])
        total += int(np.prod(shape[1:])) * (macs + ELEMENT_COST)
    return total
