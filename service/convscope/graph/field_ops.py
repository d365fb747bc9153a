"""How each op maps its input's receptive field to its output's (the per-op half of
``receptive_field.py``): windows, transposed convolutions, pooling and reductions, layout ops,
concatenation and elementwise ops with broadcasting; padding, resizing and slicing are in
``field_resampling.py``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from convscope.graph.analysis import node_attributes, window_pads
from convscope.graph.field_maps import (
    AxisMap,
    FieldContext,
    FieldMap,
    axes_argument,
    restrict,
    through,
)
from convscope.graph.field_resampling import pad_field, resize_field, slice_field

# fmt: off
# The op tables stay packed: one name a line would turn them into sixty lines of names.
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
# fmt: on


def node_fields(node: onnx.NodeProto, fields: Mapping[str, FieldMap | None], context: FieldContext) -> list[FieldMap | None]:
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
        return [pad_field(node, data, context)]
    if op in ("Resize", "Upsample"):
        return [resize_field(node, data, context)]
    if op == "Slice":
        return [slice_field(node, data, context)]
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


def _elementwise(node: onnx.NodeProto, fields: Mapping[str, FieldMap | None], context: FieldContext) -> FieldMap | None:
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
        if (
            field is not None
            and shape[field.y_axis] == out_shape[field.y_axis + shift]
            and (shape[field.x_axis] == out_shape[field.x_axis + shift])
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


def _softmax(node: onnx.NodeProto, fields: Mapping[str, FieldMap | None], context: FieldContext) -> FieldMap | None:
    data = fields.get(node.input[0])
    rank = len(context.shape(node.input[0]))
    if data is None or context.opset < 13:
        return None  # before opset 13 the op flattens every axis from `axis` on
    axis = int(node_attributes(node).get("axis", -1)) % rank
    return None if axis in (data.y_axis, data.x_axis) else data


def _layer_norm(node: onnx.NodeProto, fields: Mapping[str, FieldMap | None], context: FieldContext) -> FieldMap | None:
    data = fields.get(node.input[0])
    if data is None:
        return None
    rank = len(context.shape(node.input[0]))
    axis = int(node_attributes(node).get("axis", -1)) % rank
    normalized = range(axis, rank)
    if data.y_axis in normalized or data.x_axis in normalized:
        return _with_context(data)
    return data


def _window(node: onnx.NodeProto, data: FieldMap, context: FieldContext) -> FieldMap | None:
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
        maps[axis] = through(source, restrict(virtual, size), virtual, s)
    return FieldMap(data.y_axis, data.x_axis, maps[data.y_axis], maps[data.x_axis], data.global_context)


def _conv_transpose(node: onnx.NodeProto, data: FieldMap, context: FieldContext) -> FieldMap | None:
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
        maps[axis] = through(source, restrict(virtual, size), virtual, 1)
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
        maps[axis] = through(source, restrict(virtual, source.units), virtual, 1)
    return FieldMap(data.y_axis, data.x_axis, maps[data.y_axis], maps[data.x_axis], data.global_context)


def _reduce(node: onnx.NodeProto, data: FieldMap, context: FieldContext) -> FieldMap | None:
    rank = len(context.shape(node.input[0]))
    attributes = node_attributes(node)
    axes = axes_argument(node, context, 13 if node.op_type == "ReduceSum" else 18)
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


def _transpose(node: onnx.NodeProto, data: FieldMap, context: FieldContext) -> FieldMap | None:
    rank = len(context.shape(node.input[0]))
    perm = [int(p) for p in node_attributes(node).get("perm", list(range(rank))[::-1])]  # type: ignore[attr-defined]
    return FieldMap(perm.index(data.y_axis), perm.index(data.x_axis), data.y, data.x, data.global_context)


def _squeeze(node: onnx.NodeProto, data: FieldMap, context: FieldContext) -> FieldMap | None:
    in_rank, out_rank = len(context.shape(node.input[0])), len(context.shape(node.output[0]))
    axes = axes_argument(node, context, 13)
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


def _concat(node: onnx.NodeProto, fields: Mapping[str, FieldMap | None], context: FieldContext) -> FieldMap | None:
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
