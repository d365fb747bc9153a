"""Ops that only rearrange, select or copy elements.

Reshape-like ops and Transpose have direct inverses, and Concat/Split are each
other's adjoint.  The selecting ops (Slice, Gather, Pad, Tile, …) are replayed on a
tensor of flat indices and their gradient scatter-added back (``Emitter.flat_indices``,
``scatter_back``): the forward op itself says where every output element came from,
so negative steps, clamped bounds, negative indices, duplicates and reflect/edge
padding need no rule of their own.
"""

from __future__ import annotations

import numpy as np

from ._registry import Vjp, rule


@rule("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def _reshape(v: Vjp) -> dict[int, str]:
    return {0: v.e.reshape_like(v.dy(), v.x(0))}


@rule("Transpose")
def _transpose(v: Vjp) -> dict[int, str]:
    perm = v.attr("perm")
    if perm is None:
        return {0: v.e.op("Transpose", v.dy())}  # reversing the axes is its own inverse
    return {0: v.e.op("Transpose", v.dy(), perm=[int(i) for i in np.argsort(perm)])}


@rule("Concat", inputs=None)
def _concat(v: Vjp) -> dict[int, str]:
    e, axis = v.e, v.attr("axis")
    pick = e.ints([axis])
    sizes = [e.op("Gather", e.shape(x), pick, axis=0) for x in v.node.input]
    parts = e.op_n("Split", [v.dy(), e.op("Concat", *sizes, axis=0)], len(sizes), axis=axis)
    return {i: part for i, part in enumerate(parts) if v.need(i)}


@rule("Split", outputs=None)
def _split(v: Vjp) -> dict[int, str]:
    e = v.e
    parts = [g if g is not None else e.zeros_like(y) for g, y in zip(v.dys, v.node.output, strict=True)]
    return {0: e.op("Concat", *parts, axis=v.attr("axis", 0))}


@rule("Slice", "Gather", "GatherElements", "GatherND", "Tile")
def _selected(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    (origin,) = e.copy_node(v.node, [e.flat_indices(x), *v.node.input[1:]], 1)
    return {0: e.scatter_back(origin, v.dy(), x)}


@rule("Pad", inputs=(0, 2))
def _pad(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    # Padded positions come from no element of x: they point at an extra sink slot.
    sink = e.op("Size", x)
    inputs = [e.flat_indices(x), v.x(1), sink] + ([v.x(3)] if v.x(3) else [])
    (origin,) = e.copy_node(v.node, inputs, 1)
    return {0: e.scatter_back(origin, v.dy(), x, sink=True)}


@rule("DepthToSpace", "SpaceToDepth")
def _depth_space(v: Vjp) -> dict[int, str]:
    """Pure permutations: the gradient is the inverse permutation.

    SpaceToDepth and DCR-mode DepthToSpace are each other's inverse; CRD-mode
    DepthToSpace is undone by hand, following its definition in the ONNX spec.
    """
    e, x, block = v.e, v.x(0), v.attr("blocksize")
    if v.node.op_type == "SpaceToDepth":
        return {0: e.op("DepthToSpace", v.dy(), blocksize=block, mode="DCR")}
    if v.attr("mode", "DCR") == "DCR":
        return {0: e.op("SpaceToDepth", v.dy(), blocksize=block)}
    size = e.shape(x)
    height, width = (e.op("Gather", size, e.ints([axis]), axis=0) for axis in (2, 3))
    split = e.op("Concat", e.ints([0, -1]), height, e.ints([block]), width, e.ints([block]), axis=0)
    blocks = e.op("Transpose", e.op("Reshape", v.dy(), split), perm=[0, 1, 3, 5, 2, 4])
    return {0: e.op("Reshape", blocks, size)}
