"""Reductions and the softmax family.

The pass upgrades every model to opset ≥ 18 first, so reduction axes always arrive
as an optional input and Softmax always normalizes over one axis (the converter
rewrites pre-13 "flatten from axis" Softmax into Flatten → Softmax → Reshape).
"""

from __future__ import annotations

import math

from ._registry import Vjp, rule


def _expanded(v: Vjp, t: str, axes: str) -> str:
    """``t`` (shaped like the reduction's output) with the reduced axes back, size 1."""
    if axes and not v.attr("keepdims", 1):
        return v.e.op("Unsqueeze", t, axes)
    return t


def _count(v: Vjp) -> str:
    """How many input elements each output element summarizes."""
    e = v.e
    ratio = e.op("Div", e.op("Size", v.x(0)), e.op("Size", v.y()))
    return e.op("CastLike", ratio, v.x(0))


@rule("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin")
def _reduce(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    axes = v.x(1)
    axes_value = v.const_value(axes)
    if axes_value is not None and axes_value.size == 0:
        axes = ""
    if not axes and v.attr("noop_with_empty_axes", 0):
        return {0: v.dy()}
    g = _expanded(v, v.dy(), axes)
    op = v.node.op_type
    if op == "ReduceMean":
        g = e.op("Div", g, _count(v))
    elif op in ("ReduceMax", "ReduceMin"):
        # Ties share the gradient evenly, like torch.amax/amin.
        hit = e.op("CastLike", e.op("Equal", x, _expanded(v, v.y(), axes)), x)
        count = e.op("ReduceSum", *([hit, axes] if axes else [hit]), keepdims=1)
        return {0: e.op("Mul", hit, e.op("Div", g, count))}
    return {0: e.op("Expand", g, e.shape(x))}


@rule("GlobalAveragePool")
def _global_average_pool(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    sizes = e.static_spatial(x)
    if sizes is not None:
        # Known map size: a constant count, and N, C come from dY by broadcasting.
        count = e.scalar(float(math.prod(sizes)), x)
        return {0: e.op("Expand", e.op("Div", v.dy(), count), e.ints([1, 1, *sizes]))}
    return {0: e.op("Expand", e.op("Div", v.dy(), _count(v)), e.shape(x))}


@rule("Softmax")
def _softmax(v: Vjp) -> dict[int, str]:
    e, y = v.e, v.y()
    axis = e.ints([v.attr("axis", -1)])
    inner = e.op("ReduceSum", e.op("Mul", v.dy(), y), axis, keepdims=1)
    return {0: e.op("Mul", y, e.op("Sub", v.dy(), inner))}


@rule("LogSoftmax")
def _log_softmax(v: Vjp) -> dict[int, str]:
    e = v.e
    total = e.op("ReduceSum", v.dy(), e.ints([v.attr("axis", -1)]), keepdims=1)
    return {0: e.op("Sub", v.dy(), e.op("Mul", e.op("Exp", v.y()), total))}
