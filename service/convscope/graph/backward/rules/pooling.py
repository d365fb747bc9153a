"""Window ops: max pooling, average pooling, Resize, and LRN's channel window.

MaxPool routes each output's gradient to the element the forward op picked, read
from MaxPool's own ``Indices`` output (first maximum in the window on ties, as in
torch) and scatter-added, so overlapping windows accumulate.  MaxUnpool would
overwrite instead of add.

AveragePool and Resize are separable linear maps, so their gradients use per-axis
matrices read off the op itself (``Emitter.axis_matrix``): ceil_mode,
count_include_pad, dilations, every coordinate transformation and nearest mode
come out exactly as the forward op computes them, with nothing re-derived here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._registry import Vjp, rule


@rule("MaxPool")
def _max_pool(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    # A copy that also returns row-major Indices, whatever the forward node asked for.
    _, indices = e.copy_node(v.node, [x], 2, drop=("storage_order",))
    return {0: e.scatter_back(indices, v.dy(), x)}


@rule("GlobalMaxPool")
def _global_max_pool(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    flat = e.op("Reshape", x, e.ints([0, 0, -1]))
    first_max = e.op("ArgMax", flat, axis=2, keepdims=1)
    routed = e.op("ScatterElements", e.zeros(e.shape(flat), x), first_max, e.op("Reshape", v.dy(), e.ints([0, 0, 1])), axis=2)
    return {0: e.reshape_like(routed, x)}


@rule("AveragePool")
def _average_pool(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    kernel = v.attr("kernel_shape")
    n = len(kernel)
    strides = v.attr("strides") or [1] * n
    pads = v.attr("pads") or [0] * 2 * n
    dilations = v.attr("dilations")
    g = v.dy()
    for i in range(n):
        # The op restricted to axis i, on a 2-D map whose first axis it leaves alone.
        one_axis: dict[str, Any] = {"kernel_shape": [1, kernel[i]], "strides": [1, strides[i]]}
        if v.attr("auto_pad", "NOTSET") == "NOTSET":
            one_axis["pads"] = [0, pads[i], 0, pads[n + i]]
        if dilations:
            one_axis["dilations"] = [1, dilations[i]]
        m = e.axis_matrix(e.shape(x, start=2 + i, end=3 + i), x, v.node, **one_axis)
        g = e.apply_axis_matrix(g, 2 + i, n + 2, m)
    return {0: g}


@rule("Resize")
def _resize(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    roi, scales, sizes = v.x(1), v.x(2), v.x(3)
    rank = v.static_rank(x)
    scale_values = v.const_value(scales)
    if scale_values is not None and scale_values.size == 0:
        # Opset-11 exporters pass an empty scales tensor next to sizes.
        scales, scale_values = "", None
    if not scales and v.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise v.unsupported("keep_aspect_ratio_policy other than 'stretch'")
    crop = v.attr("coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize"
    axes = [a % rank for a in v.attr("axes") or range(rank)]
    g = v.dy()
    for j, axis in enumerate(axes):
        if scale_values is not None and float(scale_values[j]) == 1.0 and not crop:
            continue  # scale 1 maps every position to itself in all other modes
        size = e.shape(x, start=axis, end=axis + 1)
        pick = (e.ints([j]), e.ints([j + 1]))
        if scales:
            new_scales = e.op("Concat", e.const(np.ones(3, np.float32)), e.op("Slice", scales, *pick), axis=0)
            new_sizes = ""
        else:
            new_scales = ""
            new_sizes = e.op("Concat", e.ints([1, 1]), size, e.op("Slice", sizes, *pick), axis=0)
        new_roi = ""
        if crop:
            end = (e.ints([len(axes) + j]), e.ints([len(axes) + j + 1]))
            new_roi = e.op(
                "Concat",
                e.scalar([0, 0, 0], roi),
                e.op("Slice", roi, *pick),
                e.scalar([1, 1, 1], roi),
                e.op("Slice", roi, *end),
                axis=0,
            )
        m = e.axis_matrix(size, x, v.node, [new_roi, new_scales, new_sizes], drop=("axes", "keep_aspect_ratio_policy"))
        g = e.apply_axis_matrix(g, axis, rank, m)
    return {0: g}


@rule("LRN")
def _lrn(v: Vjp) -> dict[int, str]:
    """``y = x·s^−β`` with ``s = bias + α/size·W(x²)``, ``W`` a sum over a channel window:
    ``dx = dy·s^−β − (2αβ/size)·x·Wᵀ(dy·x·s^(−β−1))``."""
    e, x = v.e, v.x(0)
    size = v.attr("size")
    alpha, beta, bias = v.attr("alpha", 1e-4), v.attr("beta", 0.75), v.attr("bias", 1.0)
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    ones = e.scalar(np.ones((1, 1, size, 1)), x)

    def window(t: str, lo: int, hi: int) -> str:
        """Σ of t over channels c−lo … c+hi, as a Conv over [N, 1, C, rest]."""
        stacked = e.op("Unsqueeze", e.op("Reshape", t, e.ints([0, 0, -1])), e.ints([1]))
        return e.reshape_like(e.op("Conv", stacked, ones, pads=[lo, 0, hi, 0]), x)

    s = e.op("Add", e.scalar(bias, x), e.op("Mul", e.scalar(alpha / size, x), window(e.op("Mul", x, x), before, after)))
    direct = e.op("Mul", v.dy(), e.op("Pow", s, e.scalar(-beta, x)))
    through_s = e.op("Mul", e.op("Mul", v.dy(), x), e.op("Pow", s, e.scalar(-beta - 1.0, x)))
    coupled = e.op("Mul", e.op("Mul", x, e.scalar(2.0 * alpha * beta / size, x)), window(through_s, after, before))
    return {0: e.op("Sub", direct, coupled)}
