"""Pass: receptive fields — for every tensor, the input-pixel box that each unit sees.

Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural Networks" (Distill,
2019) give the closed form for chains of convolutions: a unit ``i`` of a layer covers input
pixels ``[start + i·stride, start + i·stride + size)``, composed layer by layer as
``stride' = stride·s``, ``size' = size + (k_eff − 1)·stride``, ``start' = start − pad·stride``.

That summary is what the layer table shows, but it is only exact where the map from units to
pixels is affine: after a stride-2 ``ConvTranspose`` or a 2× ``Resize`` the box of a unit
depends on its phase, and near the borders a strided conv can skip the last pixels that a
later padded layer then seems to reach. So the pass also carries, per spatial axis, the exact
interval of input pixels for *every unit* (``lo``/``hi``): the union over the input units a
node really reads (padding reads nothing), which is the bounding box of the pixels with a
non-zero gradient. Top activations draw their boxes from those intervals.

Supported: Conv, ConvTranspose (explicit pads), Max/Average/Lp pooling, global pooling and
spatial reductions, Pad (every mode), Resize/Upsample (nearest, linear, cubic; no antialias or
crop-and-resize), Slice, Transpose, Squeeze/Unsqueeze of other axes, Concat and Split along other
axes, and elementwise ops with broadcasting (Add/Mul of equal resolution: the union of the
operands' boxes). A data operand broadcast over space — the gate of a squeeze-excitation block,
the statistics of an instance norm — makes the unit depend on the whole image through pooled
context: the box stays the local one and ``global_context`` says so. Anything else (Reshape,
Flatten, Gemm, attention, control flow, ConvTranspose with ``output_shape``) is unknown: no
field, never a guess.

Pure: ONNX graph + tensor shapes in, fields out; no onnxruntime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from convscope.graph.analysis import (
    ai_onnx_opset,
    constant_tensors,
    data_tensors,
    node_attributes,
    producers,
    runtime_inputs,
    window_pads,
)
from convscope.graph.common import constant_value
from convscope.model.types import ReceptiveField

# A unit that reads no input pixel (a constant-padded border): its interval is empty.
EMPTY_LO = np.iinfo(np.int64).max // 4
EMPTY_HI = -EMPTY_LO
# Constant subgraphs larger than this are not evaluated (pads and scales take a handful of nodes).
MAX_CONSTANT_NODES = 64
SPATIAL_AXES = {"NCHW": (2, 3), "NHWC": (1, 2)}

ELEMENTWISE_OPS = frozenset(
    {
        # unary
        "Abs", "Acos", "Asin", "Atan", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Cos", "Dropout", "Elu", "Erf",
        "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish", "Identity", "IsInf", "IsNaN", "LeakyRelu", "Log",
        "Mish", "Neg", "Not", "Reciprocal", "Relu", "Round", "Selu", "Shrink", "Sigmoid", "Sign", "Sin", "Softplus",
        "Softsign", "Sqrt", "Tan", "Tanh", "ThresholdedRelu", "LRN", "BatchNormalization", "QuantizeLinear",
        "DequantizeLinear",
        # with broadcasting
        "Add", "And", "BitShift", "Div", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Max", "Mean",
        "Min", "Mod", "Mul", "Or", "Pow", "PRelu", "Sub", "Sum", "Where", "Xor",
    }
)
# Normalize each channel with statistics over all positions: local box plus global context.
GLOBAL_STAT_OPS = frozenset({"InstanceNormalization", "GroupNormalization", "MeanVarianceNormalization"})
WINDOW_OPS = frozenset({"Conv", "MaxPool", "AveragePool", "LpPool"})
GLOBAL_POOL_OPS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
REDUCE_OPS = frozenset(
    {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
     "ReduceLogSumExp", "ReduceSumSquare"}
)


@dataclass(frozen=True)
class AxisMap:
    """One spatial axis: per unit, the input pixels ``[lo, hi)`` it sees (exact, inside the image),
    and the affine summary ``(stride, size, start)`` before clipping where one exists."""

    lo: np.ndarray
    hi: np.ndarray
    affine: tuple[int, int, int] | None

    @property
    def units(self) -> int:
        return len(self.lo)


@dataclass(frozen=True)
class FieldMap:
    """The receptive field of one tensor: which axes hold input rows and columns, and their maps."""

    y_axis: int
    x_axis: int
    y: AxisMap
    x: AxisMap
    global_context: bool = False

    def axis(self, index: int) -> AxisMap | None:
        return self.y if index == self.y_axis else self.x if index == self.x_axis else None

    def box(self, y: int, x: int) -> tuple[int, int, int, int] | None:
        """Input pixels ``(y0, x0, y1, x1)`` (half-open) seen by unit (y, x); None if it sees none."""
        y0, y1, x0, x1 = int(self.y.lo[y]), int(self.y.hi[y]), int(self.x.lo[x]), int(self.x.hi[x])
        return (y0, x0, y1, x1) if y0 < y1 and x0 < x1 else None

    def summary(self) -> ReceptiveField | None:
        """Stride, size and the centre of unit (0, 0), where both axes are affine."""
        if self.y.affine is None or self.x.affine is None:
            return None
        (sy, ry, oy), (sx, rx, ox) = self.y.affine, self.x.affine
        return ReceptiveField(
            stride=(sy, sx), size=(ry, rx), offset=(oy + (ry - 1) / 2, ox + (rx - 1) / 2),
            global_context=self.global_context,
        )


def receptive_fields(
    model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]], *, layout: str = "NCHW"
) -> dict[str, FieldMap | None]:
    """The field of every tensor reachable from the model's (image) input; None where unknown.

    ``shapes`` are concrete shapes (at batch 1) of the input and of every tensor — the layer
    table's, learned by running the model. ``layout`` places the input's spatial axes.
    """
    graph = model.graph
    fields: dict[str, FieldMap | None] = {}
    inputs = runtime_inputs(graph)
    if len(inputs) != 1 or layout not in SPATIAL_AXES:
        return fields
    source = inputs[0].name
    shape = shapes.get(source)
    y_axis, x_axis = SPATIAL_AXES[layout]
    if shape is None or len(shape) != 4:
        return fields
    fields[source] = FieldMap(y_axis, x_axis, _identity(shape[y_axis]), _identity(shape[x_axis]))
    data = set(data_tensors(graph)) | {source}
    context = _Context(graph, shapes, constant_tensors(graph), data, ai_onnx_opset(model))
    for node in graph.node:
        if not any(name in data for name in node.input if name):
            continue  # weights, constants, shape arithmetic
        try:
            outputs = _node_fields(node, fields, context)
        except (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError):
            outputs = [None] * len(node.output)
        for name, field in zip(node.output, outputs):
            if name:
                fields[name] = field
    return fields


# -------------------------------------------------------------------------------- machinery


@dataclass(frozen=True)
class _Context:
    graph: onnx.GraphProto
    shapes: Mapping[str, Sequence[int]]
    constants: set[str]
    data: set[str]  # tensors that carry the input's values (not weights, not shape arithmetic)
    opset: int

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(d) for d in self.shapes[name])

    @cached_property
    def initializers(self) -> dict[str, onnx.TensorProto]:
        return {init.name: init for init in self.graph.initializer}

    @cached_property
    def made_by(self) -> dict[str, tuple[int, onnx.NodeProto]]:
        return producers(self.graph)

    def weight_shape(self, name: str) -> tuple[int, ...]:
        if name in self.initializers:
            return tuple(int(d) for d in self.initializers[name].dims)
        value = self.constant(name)
        if value is None:
            raise ValueError(f"no constant {name!r}")
        return value.shape

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a constant input: an initializer, a Constant node, or a small constant
        subgraph (the TorchScript exporter leaves ``Pad``'s pads as Slice/Concat of constants),
        evaluated with onnx's reference implementation."""
        if not name or name not in self.constants:
            return None
        initializers, made_by = self.initializers, self.made_by
        fixed = constant_value(name, initializers, made_by)
        if fixed is not None:
            return fixed
        needed: list[onnx.NodeProto] = []
        pending, seen = [name], set()
        while pending:
            tensor = pending.pop()
            if tensor in seen or tensor in initializers or not tensor:
                continue
            seen.add(tensor)
            if tensor not in made_by or len(needed) > MAX_CONSTANT_NODES:
                return None
            index, node = made_by[tensor]
            needed.append((index, node))  # type: ignore[arg-type]
            pending.extend(node.input)
        nodes = [node for _, node in sorted(needed, key=lambda item: item[0])]  # type: ignore[index]
        used = {i for node in nodes for i in node.input}
        graph = helper.make_graph(
            nodes, "constant", [], [onnx.ValueInfoProto(name=name)],
            initializer=[initializers[name] for name in used if name in initializers],
        )
        folded = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        try:
            (value,) = ReferenceEvaluator(folded).run(None, {})
        except Exception:  # an op the reference runtime lacks: the value stays unknown
            return None
        return np.asarray(value)


def _identity(size: int) -> AxisMap:
    lo = np.arange(size, dtype=np.int64)
    return AxisMap(lo, lo + 1, (1, 1, 0))


def _through(axis: AxisMap, taps: np.ndarray, virtual: np.ndarray | None, nominal_stride: int) -> AxisMap:
    """Compose: output unit ``o`` reads input units ``taps[o]`` (−1: none).

    ``virtual`` are the taps before clipping to the input (NaN: none), for the affine summary;
    ``nominal_stride`` is the stride to report when there is a single output unit.
    """
    valid = taps >= 0
    index = np.where(valid, taps, 0)
    lo = np.where(valid, axis.lo[index], EMPTY_LO).min(axis=1) if taps.shape[1] else np.full(len(taps), EMPTY_LO)
    hi = np.where(valid, axis.hi[index], EMPTY_HI).max(axis=1) if taps.shape[1] else np.full(len(taps), EMPTY_HI)
    return AxisMap(lo.astype(np.int64), hi.astype(np.int64), _affine(axis.affine, virtual, nominal_stride))


def _affine(
    before: tuple[int, int, int] | None, virtual: np.ndarray | None, nominal_stride: int
) -> tuple[int, int, int] | None:
    if before is None or virtual is None or not len(virtual) or np.isnan(virtual).all(axis=1).any():
        return None
    first, last = np.nanmin(virtual, axis=1), np.nanmax(virtual, axis=1)
    units = np.arange(len(first))
    step = first[1] - first[0] if len(first) > 1 else float(nominal_stride)
    span = last[0] - first[0]
    if step < 0 or not np.array_equal(first, first[0] + step * units) or not np.array_equal(last - first, np.full_like(first, span)):
        return None
    if step != int(step) or first[0] != int(first[0]) or span != int(span):
        return None
    stride, size, start = before
    return stride * int(step), size + int(span) * stride, start + int(first[0]) * stride


def _restrict(virtual: np.ndarray, size: int) -> np.ndarray:
    inside = ~np.isnan(virtual) & (virtual >= 0) & (virtual < size)
    return np.where(inside, np.nan_to_num(virtual), -1).astype(np.int64)


def _node_fields(node: onnx.NodeProto, fields: Mapping[str, FieldMap | None], context: _Context) -> list[FieldMap | None]:
    op = node.op_type
    unknown: list[FieldMap | None] = [None] * len(node.output)
    if node.domain not in ("", "ai.onnx"):
        return unknown
    if op in ELEMENTWISE_OPS:
        return [_elementwise(node, fields, context)] + [None] * (len(node.output) - 1)
    if op in GLOBAL_STAT_OPS:
        field = _elementwise(node, fields, context)
        return [_with_context(field)] + [None] * (len(node.output) - 1)
    if op in ("Softmax", "LogSoftmax", "Hardmax"):
        return [_softmax(node, fields, context)]
    if op == "LayerNormalization":
        return [_layer_norm(node, fields, context)] + [None] * (len(node.output) - 1)
    data = fields.get(node.input[0])
    if data is None:
        return unknown
    if op in WINDOW_OPS:
        return [_window(node, data, context)] + [None] * (len(node.output) - 1)
    if op == "ConvTranspose":
        return [_conv_transpose(node, data, context)]
    if op in GLOBAL_POOL_OPS:
        return [_pool_all(data, keep=True)]
    if op in REDUCE_OPS:
        return [_reduce(node, data, context)]
    if op == "Pad":
        return [_pad(node, data, context)]
    if op in ("Resize", "Upsample"):
        return [_resize(node, data, context)]
    if op == "Slice":
        return [_slice(node, data, context)]
    if op == "Transpose":
        return [_transpose(node, data, context)]
    if op in ("Squeeze", "Unsqueeze"):
        return [_squeeze(node, data, context)]
    if op == "Concat":
        return [_concat(node, fields, context)]
    if op == "Split":
        axis = int(node_attributes(node).get("axis", 0)) % len(context.shape(node.input[0]))
        return [None if axis in (data.y_axis, data.x_axis) else data for _ in node.output]
    return unknown


def _with_context(field: FieldMap | None) -> FieldMap | None:
    return FieldMap(field.y_axis, field.x_axis, field.y, field.x, True) if field is not None else None


def _elementwise(node: onnx.NodeProto, fields: Mapping[str, FieldMap | None], context: _Context) -> FieldMap | None:
    """Per-position ops with multidirectional broadcasting; the union of the operands' boxes."""
    out_shape = context.shape(node.output[0])
    rank = len(out_shape)
    carried: list[FieldMap] = []
    broadcast: list[tuple[int, ...]] = []  # shapes of data operands with no field of their own
    global_context = False
    for name in node.input:
        if not name or name not in context.data:
            continue  # weights and shape arithmetic carry no pixels
        shape = context.shape(name)
        field = fields.get(name)
        shift = rank - len(shape)
        if field is not None and shape[field.y_axis] == out_shape[field.y_axis + shift] and (
            shape[field.x_axis] == out_shape[field.x_axis + shift]
        ):
            carried.append(FieldMap(field.y_axis + shift, field.x_axis + shift, field.y, field.x, field.global_context))
        else:
            broadcast.append(shape)
    if not carried:
        return None
    y_axis, x_axis = carried[0].y_axis, carried[0].x_axis
    if any((f.y_axis, f.x_axis) != (y_axis, x_axis) for f in carried):
        return None
    for shape in broadcast:  # must be size 1 over both spatial axes: pooled context
        shift = rank - len(shape)
        dims = [shape[a - shift] if a - shift >= 0 else 1 for a in (y_axis, x_axis)]
        if dims != [1, 1]:
            return None
        global_context = True
    y = _union([f.y for f in carried])
    x = _union([f.x for f in carried])
    if y is None or x is None:
        return None
    return FieldMap(y_axis, x_axis, y, x, global_context or any(f.global_context for f in carried))


def _union(maps: list[AxisMap]) -> AxisMap | None:
    if len({m.units for m in maps}) != 1:
        return None
    if len(maps) == 1:
        return maps[0]
    lo = np.min([m.lo for m in maps], axis=0)
    hi = np.max([m.hi for m in maps], axis=0)
    affine = None
    if all(m.affine is not None for m in maps) and len({m.affine[0] for m in maps if m.affine}) == 1:
        stride = maps[0].affine[0]  # type: ignore[index]
        start = min(m.affine[2] for m in maps if m.affine)
        end = max(m.affine[2] + m.affine[1] for m in maps if m.affine)
        affine = (stride, end - start, start)
    return AxisMap(lo, hi, affine)


def _softmax(node: onnx.NodeProto, fields: Mapping[str, FieldMap | None], context: _Context) -> FieldMap | None:
    data = fields.get(node.input[0])
    rank = len(context.shape(node.input[0]))
    if data is None or context.opset < 13:
        return None  # before opset 13 the op flattens every axis from `axis` on
    axis = int(node_attributes(node).get("axis", -1)) % rank
    return None if axis in (data.y_axis, data.x_axis) else data


def _layer_norm(node: onnx.NodeProto, fields: Mapping[str, FieldMap | None], context: _Context) -> FieldMap | None:
    data = fields.get(node.input[0])
    if data is None:
        return None
    rank = len(context.shape(node.input[0]))
    axis = int(node_attributes(node).get("axis", -1)) % rank
    normalized = range(axis, rank)
    if data.y_axis in normalized or data.x_axis in normalized:
        return _with_context(data)
    return data


def _window(node: onnx.NodeProto, data: FieldMap, context: _Context) -> FieldMap | None:
    """Conv and pooling: output unit ``o`` reads input units ``o·s − pad + k·d``."""
    in_shape, out_shape = context.shape(node.input[0]), context.shape(node.output[0])
    if len(in_shape) != 4 or {data.y_axis, data.x_axis} != {2, 3}:
        return None
    attributes = node_attributes(node)
    if node.op_type == "Conv":
        if node.input[1] in context.data:
            return None  # weights computed from the input: not a fixed window
        kernel = list(attributes.get("kernel_shape") or context.weight_shape(node.input[1])[2:])  # type: ignore[arg-type]
    else:
        kernel = list(attributes["kernel_shape"])  # type: ignore[call-overload]
    strides = [int(s) for s in attributes.get("strides", [1, 1])]  # type: ignore[attr-defined]
    dilations = [int(d) for d in attributes.get("dilations", [1, 1])]  # type: ignore[attr-defined]
    extents = [d * (int(k) - 1) + 1 for k, d in zip(kernel, dilations)]
    pads = window_pads(attributes, extents, strides, in_shape[2:])
    maps: dict[int, AxisMap] = {}
    for i, axis in enumerate((2, 3)):
        size, out = in_shape[axis], out_shape[axis]
        k, s, d = int(kernel[i]), strides[i], dilations[i]
        virtual = (np.arange(out)[:, None] * s - pads[i][0] + np.arange(k)[None, :] * d).astype(np.float64)
        source = data.axis(axis)
        if source is None:
            return None
        maps[axis] = _through(source, _restrict(virtual, size), virtual, s)
    return FieldMap(data.y_axis, data.x_axis, maps[data.y_axis], maps[data.x_axis], data.global_context)


def _conv_transpose(node: onnx.NodeProto, data: FieldMap, context: _Context) -> FieldMap | None:
    """Output unit ``o`` receives input unit ``i`` when ``o = i·s − pad + k·d``."""
    in_shape, out_shape = context.shape(node.input[0]), context.shape(node.output[0])
    if len(in_shape) != 4 or {data.y_axis, data.x_axis} != {2, 3}:
        return None
    if node.input[1] in context.data:
        return None
    attributes = node_attributes(node)
    if "output_shape" in attributes or attributes.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return None  # implicit pads: onnxruntime and the spec disagree on where they go
    kernel = list(attributes.get("kernel_shape") or context.weight_shape(node.input[1])[2:])  # type: ignore[arg-type]
    strides = list(attributes.get("strides", [1, 1]))  # type: ignore[call-overload]
    dilations = list(attributes.get("dilations", [1, 1]))  # type: ignore[call-overload]
    pads = window_pads(attributes, [1, 1], strides, in_shape[2:])  # explicit or VALID: no extents needed
    maps: dict[int, AxisMap] = {}
    for i, axis in enumerate((2, 3)):
        size, out = in_shape[axis], out_shape[axis]
        k, s, d = int(kernel[i]), int(strides[i]), int(dilations[i])
        numerator = np.arange(out)[:, None] + pads[i][0] - np.arange(k)[None, :] * d
        virtual = np.where(numerator % s == 0, numerator // s, np.nan).astype(np.float64)
        source = data.axis(axis)
        if source is None:
            return None
        maps[axis] = _through(source, _restrict(virtual, size), virtual, 1)
    return FieldMap(data.y_axis, data.x_axis, maps[data.y_axis], maps[data.x_axis], data.global_context)


def _pool_all(data: FieldMap, *, keep: bool) -> FieldMap | None:
    """Every input unit feeds the single output unit (global pooling, spatial reductions)."""
    if not keep:
        return None
    maps = {}
    for axis in (data.y_axis, data.x_axis):
        source = data.axis(axis)
        if source is None:
            return None
        virtual = np.arange(source.units, dtype=np.float64)[None, :]
        maps[axis] = _through(source, _restrict(virtual, source.units), virtual, 1)
    return FieldMap(data.y_axis, data.x_axis, maps[data.y_axis], maps[data.x_axis], data.global_context)


def _axes_argument(node: onnx.NodeProto, context: _Context, attribute_until: int, input_index: int = 1) -> list[int] | None:
    """``axes`` as an attribute (older opsets) or a constant input; None if given but not constant."""
    attributes = node_attributes(node)
    if "axes" in attributes:
        return [int(a) for a in attributes["axes"]]  # type: ignore[attr-defined]
    if context.opset >= attribute_until and len(node.input) > input_index and node.input[input_index]:
        value = context.constant(node.input[input_index])
        return None if value is None else [int(a) for a in np.asarray(value).ravel()]
    return []


def _reduce(node: onnx.NodeProto, data: FieldMap, context: _Context) -> FieldMap | None:
    rank = len(context.shape(node.input[0]))
    attributes = node_attributes(node)
    axes = _axes_argument(node, context, 13 if node.op_type == "ReduceSum" else 18)
    if axes is None:
        return None
    if not axes:
        if attributes.get("noop_with_empty_axes", 0):
            return data
        axes = list(range(rank))
    axes = sorted(a % rank for a in axes)
    keep = bool(attributes.get("keepdims", 1))
    spatial = [a for a in axes if a in (data.y_axis, data.x_axis)]
    if spatial and len(spatial) != 2:
        return None
    if spatial:
        return _pool_all(data, keep=keep)
    if keep:
        return data
    shift = lambda a: a - sum(1 for r in axes if r < a)  # noqa: E731
    return FieldMap(shift(data.y_axis), shift(data.x_axis), data.y, data.x, data.global_context)


def _pad(node: onnx.NodeProto, data: FieldMap, context: _Context) -> FieldMap | None:
    in_shape, out_shape = context.shape(node.input[0]), context.shape(node.output[0])
    rank = len(in_shape)
    attributes = node_attributes(node)
    mode = attributes.get("mode", "constant")
    if context.opset < 11:
        raw = list(attributes.get("pads", []))  # type: ignore[call-overload]
        axes = list(range(rank))
    else:
        value = context.constant(node.input[1])
        if value is None:
            return None
        raw = [int(v) for v in value.ravel()]
        axes = _axes_argument(node, context, 18, input_index=3) if context.opset >= 18 else []
        if axes is None:
            return None
        axes = [a % rank for a in axes] or list(range(rank))
    begins = {axis: int(raw[i]) for i, axis in enumerate(axes)}
    maps = {}
    for axis in (data.y_axis, data.x_axis):
        size, out = in_shape[axis], out_shape[axis]
        source = data.axis(axis)
        if source is None:
            return None
        virtual = (np.arange(out) - begins.get(axis, 0)).astype(np.float64)[:, None]
        index = virtual[:, 0].astype(np.int64)
        if mode == "constant":
            taps = _restrict(virtual, size)
        elif mode == "edge":
            taps = np.clip(index, 0, size - 1)[:, None]
        elif mode == "wrap":
            taps = (index % size)[:, None]
        elif mode == "reflect":
            if size == 1:
                taps = np.zeros_like(index)[:, None]
            else:
                period = 2 * (size - 1)
                folded = np.abs(index) % period
                taps = np.where(folded < size, folded, period - folded)[:, None]
        else:
            return None
        maps[axis] = _through(source, taps, virtual, 1)
    return FieldMap(data.y_axis, data.x_axis, maps[data.y_axis], maps[data.x_axis], data.global_context)


def _resize(node: onnx.NodeProto, data: FieldMap, context: _Context) -> FieldMap | None:
    in_shape, out_shape = context.shape(node.input[0]), context.shape(node.output[0])
    rank = len(in_shape)
    attributes = node_attributes(node)
    mode = attributes.get("mode", "nearest")
    if node.op_type == "Upsample" or context.opset < 11:
        # Upsample and opset-10 Resize: asymmetric coordinates, nearest rounds down when upsampling
        transform, nearest_mode = "asymmetric", "floor"
        if context.opset < 9:
            scales = np.asarray(attributes.get("scales", []), np.float32)
        else:
            scales = context.constant(node.input[1]) if len(node.input) > 1 else None
        if scales is None or scales.size != rank or (mode == "nearest" and (scales < 1).any()):
            return None
    else:
        transform = attributes.get("coordinate_transformation_mode", "half_pixel")
        nearest_mode = attributes.get("nearest_mode", "round_prefer_floor")
        scales = context.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if attributes.get("antialias", 0) or "axes" in attributes:
            return None
    if transform == "tf_crop_and_resize" or mode not in ("nearest", "linear", "cubic", "bilinear"):
        return None
    if any(in_shape[a] != out_shape[a] for a in range(rank) if a not in (data.y_axis, data.x_axis)):
        return None
    maps = {}
    for axis in (data.y_axis, data.x_axis):
        size, out = in_shape[axis], out_shape[axis]
        scale = float(scales.ravel()[axis]) if scales is not None and scales.size == rank else out / size
        x = _source_coordinates(np.arange(out), transform, np.float32(scale), size, out)
        if mode == "nearest":
            virtual = _round(x, nearest_mode)[:, None]
            taps = np.clip(virtual, 0, size - 1).astype(np.int64)
        elif mode in ("linear", "bilinear"):
            clamped = np.clip(x, 0, size - 1)
            base = np.floor(clamped)
            second = np.where(clamped > base, base + 1, np.nan)
            taps = np.stack([base, np.nan_to_num(second, nan=-1)], 1).astype(np.int64)
            base_v = np.floor(x)
            virtual = np.stack([base_v, np.where(x > base_v, base_v + 1, np.nan)], 1)
        else:  # cubic: four taps around floor(x), clamped to the edge; one when x is integral
            if attributes.get("exclude_outside", 0):
                return None
            base = np.floor(x)
            offsets = np.array([-1.0, 0.0, 1.0, 2.0])
            virtual = np.where((x > base)[:, None], base[:, None] + offsets, np.where(offsets == 0, base[:, None], np.nan))
            taps = np.where(np.isnan(virtual), -1, np.clip(np.nan_to_num(virtual), 0, size - 1)).astype(np.int64)
        source = data.axis(axis)
        if source is None:
            return None
        maps[axis] = _through(source, taps, virtual.astype(np.float64), max(1, round(1 / scale)))
    return FieldMap(data.y_axis, data.x_axis, maps[data.y_axis], maps[data.x_axis], data.global_context)


def _source_coordinates(out: np.ndarray, transform: str, scale: np.float32, size: int, length: int) -> np.ndarray:
    """Where output unit ``o`` samples the input, in float32 as onnxruntime computes it."""
    o = out.astype(np.float32)
    half = np.float32(0.5)
    if transform == "asymmetric":
        x = o / scale
    elif transform == "align_corners":
        x = o * np.float32(size - 1) / np.float32(length - 1) if length > 1 else np.zeros_like(o)
    elif transform == "pytorch_half_pixel":
        x = (o + half) / scale - half if length > 1 else np.zeros_like(o)
    elif transform == "half_pixel_symmetric":
        adjustment = np.float32(length) / (scale * np.float32(size))
        centre = np.float32(size) / 2
        x = centre * (1 - adjustment) + (o + half) / scale - half
    elif transform == "half_pixel":
        x = (o + half) / scale - half
    else:
        raise ValueError(transform)
    return x.astype(np.float64)


def _round(x: np.ndarray, mode: str) -> np.ndarray:
    if mode == "floor":
        return np.floor(x)
    if mode == "ceil":
        return np.ceil(x)
    halfway = (x - np.floor(x)) == 0.5
    if mode == "round_prefer_ceil":
        return np.where(halfway, np.ceil(x), np.round(x))
    return np.where(halfway, np.floor(x), np.round(x))  # round_prefer_floor


def _slice(node: onnx.NodeProto, data: FieldMap, context: _Context) -> FieldMap | None:
    in_shape, out_shape = context.shape(node.input[0]), context.shape(node.output[0])
    rank = len(in_shape)
    if context.opset < 10:
        attributes = node_attributes(node)
        starts, ends = list(attributes["starts"]), list(attributes["ends"])  # type: ignore[call-overload]
        axes = list(attributes.get("axes", range(len(starts))))  # type: ignore[call-overload]
        steps = [1] * len(starts)
    else:
        values = [context.constant(name) if i < len(node.input) and name else None for i, name in enumerate(node.input)]
        if values[1] is None or values[2] is None or (len(node.input) > 3 and node.input[3] and values[3] is None):
            return None
        if len(node.input) > 4 and node.input[4] and values[4] is None:
            return None
        starts = [int(v) for v in values[1].ravel()]  # type: ignore[union-attr]
        axes = [int(v) for v in values[3].ravel()] if len(values) > 3 and values[3] is not None else list(range(len(starts)))
        steps = [int(v) for v in values[4].ravel()] if len(values) > 4 and values[4] is not None else [1] * len(starts)
    begin = {a % rank: (int(s), int(t)) for a, s, t in zip(axes, starts, steps)}
    maps = {}
    for axis in (data.y_axis, data.x_axis):
        size, out = in_shape[axis], out_shape[axis]
        start, step = begin.get(axis, (0, 1))
        if step <= 0:
            return None
        start = min(max(start + size if start < 0 else start, 0), size)
        virtual = (start + np.arange(out) * step).astype(np.float64)[:, None]
        source = data.axis(axis)
        if source is None:
            return None
        maps[axis] = _through(source, _restrict(virtual, size), virtual, step)
    return FieldMap(data.y_axis, data.x_axis, maps[data.y_axis], maps[data.x_axis], data.global_context)


def _transpose(node: onnx.NodeProto, data: FieldMap, context: _Context) -> FieldMap | None:
    rank = len(context.shape(node.input[0]))
    perm = [int(p) for p in node_attributes(node).get("perm", list(range(rank))[::-1])]  # type: ignore[attr-defined]
    return FieldMap(perm.index(data.y_axis), perm.index(data.x_axis), data.y, data.x, data.global_context)


def _squeeze(node: onnx.NodeProto, data: FieldMap, context: _Context) -> FieldMap | None:
    in_rank, out_rank = len(context.shape(node.input[0])), len(context.shape(node.output[0]))
    axes = _axes_argument(node, context, 13)
    if axes is None:
        return None
    if node.op_type == "Squeeze":
        if not axes:
            axes = [a for a, d in enumerate(context.shape(node.input[0])) if d == 1]
        axes = [a % in_rank for a in axes]
        if data.y_axis in axes or data.x_axis in axes:
            return None
        shift = lambda a: a - sum(1 for r in axes if r < a)  # noqa: E731
        return FieldMap(shift(data.y_axis), shift(data.x_axis), data.y, data.x, data.global_context)
    axes = sorted(a % out_rank for a in axes)
    kept = [a for a in range(out_rank) if a not in axes]  # output axes that come from the input, in order
    return FieldMap(kept[data.y_axis], kept[data.x_axis], data.y, data.x, data.global_context)


def _concat(node: onnx.NodeProto, fields: Mapping[str, FieldMap | None], context: _Context) -> FieldMap | None:
    out_shape = context.shape(node.output[0])
    axis = int(node_attributes(node).get("axis", 0)) % len(out_shape)
    parts = []
    for name in node.input:
        if not name or name not in context.data:
            continue
        field = fields.get(name)
        if field is None:
            return None
        parts.append(field)
    if not parts or any((p.y_axis, p.x_axis) != (parts[0].y_axis, parts[0].x_axis) for p in parts):
        return None
    if axis in (parts[0].y_axis, parts[0].x_axis):
        return None  # stacking along space: not one window per unit
    y, x = _union([p.y for p in parts]), _union([p.x for p in parts])
    if y is None or x is None:
        return None
    return FieldMap(parts[0].y_axis, parts[0].x_axis, y, x, any(p.global_context for p in parts))

