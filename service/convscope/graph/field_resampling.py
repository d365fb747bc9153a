"""The ops that read their input at new coordinates, for the receptive-field pass
(``field_ops.py`` dispatches to them): padding (every mode), resizing (every coordinate
transformation, nearest, linear and cubic taps) and strided slicing."""

from __future__ import annotations

import numpy as np
import onnx

from convscope.graph.analysis import node_attributes
from convscope.graph.field_maps import (
    FieldContext,
    FieldMap,
    axes_argument,
    restrict,
    round_coordinates,
    source_coordinates,
    through,
)


def pad_field(node: onnx.NodeProto, data: FieldMap, context: FieldContext) -> FieldMap | None:
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
        axes = axes_argument(node, context, 18, input_index=3) if context.opset >= 18 else []
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
            taps = restrict(virtual, size)
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
        maps[axis] = through(source, taps, virtual, 1)
    return FieldMap(data.y_axis, data.x_axis, maps[data.y_axis], maps[data.x_axis], data.global_context)


def resize_field(node: onnx.NodeProto, data: FieldMap, context: FieldContext) -> FieldMap | None:
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
        x = source_coordinates(np.arange(out), transform, np.float32(scale), size, out)
        if mode == "nearest":
            virtual = round_coordinates(x, nearest_mode)[:, None]
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
        maps[axis] = through(source, taps, virtual.astype(np.float64), max(1, round(1 / scale)))
    return FieldMap(data.y_axis, data.x_axis, maps[data.y_axis], maps[data.x_axis], data.global_context)


def slice_field(node: onnx.NodeProto, data: FieldMap, context: FieldContext) -> FieldMap | None:
    in_shape, out_shape = context.shape(node.input[0]), context.shape(node.output[0])
    rank = len(in_shape)
    if context.opset < 10:
        attributes = node_attributes(node)
        starts = list(attributes["starts"])  # type: ignore[call-overload]  # the ends follow from the output shape
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
        maps[axis] = through(source, restrict(virtual, size), virtual, step)
    return FieldMap(data.y_axis, data.x_axis, maps[data.y_axis], maps[data.x_axis], data.global_context)
