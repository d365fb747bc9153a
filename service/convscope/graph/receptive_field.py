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

import onnx

from convscope.graph.analysis import ai_onnx_opset, constant_tensors, data_tensors, runtime_inputs
from convscope.graph.field_maps import AxisMap, FieldContext, FieldMap, identity_axis
from convscope.graph.field_ops import node_fields

__all__ = ["AxisMap", "FieldMap", "receptive_fields"]

SPATIAL_AXES = {"NCHW": (2, 3), "NHWC": (1, 2)}


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
    fields[source] = FieldMap(y_axis, x_axis, identity_axis(shape[y_axis]), identity_axis(shape[x_axis]))
    data = set(data_tensors(graph)) | {source}
    context = FieldContext(graph, shapes, constant_tensors(graph), data, ai_onnx_opset(model))
    for node in graph.node:
        if not any(name in data for name in node.input if name):
            continue  # weights, constants, shape arithmetic
        try:
            outputs = node_fields(node, fields, context)
        except (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError):
            outputs = [None] * len(node.output)
        for name, field in zip(node.output, outputs):
            if name:
                fields[name] = field
    return fields
