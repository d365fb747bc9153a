"""Node emission for the backward graph, and the building blocks several rules share.

Every generated node is a standard ``ai.onnx`` op (opset ≥ 18, see ``builder``),
named under ``bwd/<forward node>/`` so the exported graph reads next to the forward
one.  Shapes are handled at run time (``Shape`` → arithmetic → ``Pad``/``Slice``/
``Reshape``) wherever a static answer could be wrong, so one backward graph serves
every batch size and, where the forward model allows it, every image size.  Where shape
inference pins a size down, rules use it as a constant instead, which saves the
arithmetic nodes and, for Conv, a Pad and a Slice copy of every gradient.  Weight-sized
constants a rule derives at build time (flipped kernels) become initializers.

The shared blocks encode one idea each:

* ``unbroadcast``: the adjoint of numpy broadcasting is a sum over the broadcast axes.
* ``fit``: the adjoint of "crop or zero-pad along some axes" is its mirror image;
  Conv/ConvTranspose gradients are a transposed op on the unpadded extent, then a fit.
* ``replay_indices`` / ``scatter_back``: ops that only move or copy elements
  (Slice, Gather, Pad, Tile, …) are replayed on a tensor of flat indices, which tells
  where each output element came from; the gradient is a scatter-add back there.
  Replaying the forward op itself reproduces its exact semantics (negative steps,
  clamped bounds, reflect padding) without re-deriving them.
* ``axis_matrix`` / ``apply_axis_matrix``: ops that are separable linear maps
  (AveragePool, Resize) are run on an identity to read off each axis's matrix; the
  gradient multiplies by its transpose.  Again the forward op defines the numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Dim = int | str | None
"""A static dimension: a size, a symbolic name, or unknown."""

FLOAT_TYPES = frozenset({TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16})

# Only these element types get typed constants directly; others (bfloat16, unknown)
# go through CastLike so a constant never silently changes a tensor's precision.
_NUMPY_FLOATS: dict[int, type[np.floating[Any]]] = {
    TensorProto.FLOAT: np.float32,
    TensorProto.FLOAT16: np.float16,
    TensorProto.DOUBLE: np.float64,
}


@dataclass(frozen=True)
class TensorInfo:
    """What shape inference told us about a forward tensor (0 / None when it could not)."""

    elem_type: int
    shape: tuple[Dim, ...] | None


class Emitter:
    """Appends backward nodes, hands out unique names, and knows forward tensor types."""

    def __init__(self, infos: dict[str, TensorInfo], taken: set[str]) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self._infos = infos
        self._taken = taken
        self._const_cache: dict[tuple[str, tuple[int, ...], bytes], str] = {}
        self._initializer_cache: dict[tuple[str, ...], str] = {}
        self.initializers: list[onnx.TensorProto] = []
        self.scope = "bwd"

    # -- names and raw nodes -------------------------------------------------------

    def fresh(self, hint: str) -> str:
        base = f"{self.scope}/{hint}"
        name, k = base, 1
        while name in self._taken:
            name, k = f"{base}_{k}", k + 1
        self._taken.add(name)
        return name

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        return self.op_n(op_type, inputs, 1, **attrs)[0]

    def op_n(self, op_type: str, inputs: Sequence[str], n_out: int, **attrs: Any) -> list[str]:
        outputs = [self.fresh(op_type) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=outputs[0], **attrs))
        return outputs

    def copy_node(
        self, node: onnx.NodeProto, inputs: Sequence[str], n_out: int, drop: Sequence[str] = (), **attrs: Any
    ) -> list[str]:
        """A forward node again, on new inputs, with some attributes dropped or replaced."""
        kept = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name not in drop and a.name not in attrs}
        return self.op_n(node.op_type, inputs, n_out, **kept, **attrs)

    # -- forward tensor facts ------------------------------------------------------

    def info(self, name: str) -> TensorInfo:
        return self._infos.get(name, TensorInfo(0, None))

    def rank(self, name: str) -> int | None:
        shape = self.info(name).shape
        return None if shape is None else len(shape)

    # -- constants -----------------------------------------------------------------

    def const(self, value: np.ndarray) -> str:
        key = (value.dtype.str, value.shape, value.tobytes())
        if key not in self._const_cache:
            name = self.fresh("const")
            self.nodes.append(helper.make_node("Constant", [], [name], name=name, value=numpy_helper.from_array(value, name)))
            self._const_cache[key] = name
        return self._const_cache[key]

    def initializer(self, key: tuple[str, ...], make: Callable[[], np.ndarray]) -> str:
        """A weight-sized constant, stored as a graph initializer and made once per ``key``.

        For tensors derived from the model's weights at build time (a transposed, flipped
        kernel): ``key`` names the source and the transformation, so a shared weight is
        transformed once and no large array is hashed.
        """
        if key not in self._initializer_cache:
            name = self.fresh("weight")
            self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(make()), name))
            self._initializer_cache[key] = name
        return self._initializer_cache[key]

    def ints(self, values: Sequence[int] | int) -> str:
        """An int64 constant: 1-D for a sequence, a scalar for an int."""
        return self.const(np.array(values, dtype=np.int64))

    def scalar(self, value: float | Sequence[float] | np.ndarray, like: str) -> str:
        """A constant of ``like``'s element type (``like`` must be a forward tensor)."""
        np_type = _NUMPY_FLOATS.get(self.info(like).elem_type)
        if np_type is None:
            return self.op("CastLike", self.const(np.asarray(value, np.float32)), like)
        return self.const(np.asarray(value, dtype=np_type))

    def zero_value(self, like: str) -> onnx.TensorProto | None:
        """``ConstantOfShape``'s value attribute for zeros of ``like``'s type, if known."""
        elem_type = self.info(like).elem_type
        if elem_type not in FLOAT_TYPES:
            return None
        return helper.make_tensor("zero", elem_type, [1], [0.0])

    def zeros(self, shape: str, like: str) -> str:
        """Zeros with the run-time ``shape`` and ``like``'s element type."""
        value = self.zero_value(like)
        if value is None:
            return self.op("CastLike", self.op("ConstantOfShape", shape), like)
        return self.op("ConstantOfShape", shape, value=value)

    def zeros_like(self, name: str) -> str:
        return self.zeros(self.shape(name), name)

    # -- shapes --------------------------------------------------------------------

    def shape(self, name: str, start: int | None = None, end: int | None = None) -> str:
        attrs = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
        return self.op("Shape", name, **attrs)

    def static_shape(self, name: str) -> list[int] | None:
        """``name``'s shape as a constant Reshape target: every dim known, or all but one (−1)."""
        shape = self.info(name).shape
        if shape is None or any(isinstance(d, int) and d <= 0 for d in shape):
            return None
        dims = [d if isinstance(d, int) else -1 for d in shape]
        return dims if dims.count(-1) <= 1 else None

    def static_spatial(self, name: str) -> tuple[int, ...] | None:
        """The spatial sizes (axes 2…) of ``name`` if shape inference pinned every one down."""
        shape = self.info(name).shape
        if shape is None or len(shape) < 3:
            return None
        sizes = tuple(d for d in shape[2:] if isinstance(d, int) and d > 0)
        return sizes if len(sizes) == len(shape) - 2 else None

    def reshape_like(self, g: str, like: str) -> str:
        """``g`` (with as many elements as ``like``) in ``like``'s shape."""
        dims = self.static_shape(like)
        return self.op("Reshape", g, self.shape(like) if dims is None else self.ints(dims))

    def unbroadcast(self, g: str, like: str, g_shape: tuple[Dim, ...] | None) -> str:
        """Sum ``g`` (whose static shape is ``g_shape`` if known) down to ``like``'s shape.

        Decided statically when the shapes allow it; otherwise the broadcast axes are
        found at run time.  Either way ReduceSum never sees an empty axes list: with
        ``noop_with_empty_axes=1`` an empty list is a no-op, not a sum over everything.
        """
        x_shape = self.info(like).shape
        if x_shape is not None and g_shape is not None:
            axes = _broadcast_axes(x_shape, g_shape)
            if axes is not None:
                if not axes:
                    return g
                summed = self.op("ReduceSum", g, self.ints(axes), keepdims=1)
                return self.reshape_like(summed, like)
        gs, xs = self.shape(g), self.shape(like)
        missing = self.op("Sub", self.op("Shape", gs), self.op("Shape", xs))
        ones = self.op("ConstantOfShape", missing, value=helper.make_tensor("one", TensorProto.INT64, [1], [1]))
        aligned = self.op("Concat", ones, xs, axis=0)
        differs = self.op("Not", self.op("Equal", aligned, gs))
        axes_t = self.op("Reshape", self.op("NonZero", differs), self.ints([-1]))
        summed = self.op("ReduceSum", g, axes_t, keepdims=1, noop_with_empty_axes=1)
        return self.op("Reshape", summed, xs)

    def fit(self, t: str, axes: Sequence[int], offset: str, length: str) -> str:
        """``out[f] = t[f - offset]`` (zero outside ``t``) for ``f`` in ``[0, length)`` on ``axes``.

        ``offset`` and ``length`` are int64 vectors, one entry per axis, known at run time.
        """
        zero = self.ints([0] * len(axes))
        axes_t = self.ints(list(axes))
        size = self.op("Gather", self.shape(t), axes_t, axis=0)
        pad_begin = self.op("Max", offset, zero)
        pad_end = self.op("Max", self.op("Sub", self.op("Sub", length, offset), size), zero)
        padded = self.op("Pad", t, self.op("Concat", pad_begin, pad_end, axis=0), "", axes_t)
        start = self.op("Max", self.op("Neg", offset), zero)
        return self.op("Slice", padded, start, self.op("Add", start, length), axes_t)

    # -- element-moving ops: replay on indices, scatter back -------------------------

    def flat_indices(self, x: str) -> str:
        """An int64 tensor shaped like ``x`` holding each element's flat (row-major) index."""
        flat = self.op("Range", self.ints(0), self.op("Size", x), self.ints(1))
        return self.op("Reshape", flat, self.shape(x))

    def scatter_back(self, indices: str, g: str, x: str, sink: bool = False) -> str:
        """Add each element of ``g`` into a zero tensor shaped like ``x`` at its flat index.

        With ``sink``, index ``Size(x)`` is one extra slot for elements that came from no
        element of ``x`` (constant padding); it is dropped afterwards.
        """
        size = self.op("Reshape", self.op("Size", x), self.ints([1]))
        slots = self.op("Add", size, self.ints([1])) if sink else size
        flat = self.op(
            "ScatterElements",
            self.zeros(slots, x),
            self.op("Reshape", indices, self.ints([-1])),
            self.op("Reshape", g, self.ints([-1])),
            axis=0,
            reduction="add",
        )
        if sink:
            flat = self.op("Slice", flat, self.ints([0]), size)
        return self.reshape_like(flat, x)

    # -- separable linear maps: read each axis's matrix off the op itself ------------

    def axis_matrix(
        self, n: str, like: str, node: onnx.NodeProto, inputs: Sequence[str] = (), drop: Sequence[str] = (), **attrs: Any
    ) -> str:
        """The matrix ``Mᵀ`` (``[n, out]``) of one axis of a separable linear op.

        ``node`` (with ``inputs`` after the data, attributes dropped or replaced) is run
        on a ``[1, 1, n, n]`` identity: the caller sets it up to leave the third axis
        alone and to map the fourth like the axis of interest, so row ``i`` of the
        result is the op's response to ``e_i``.
        """
        square = self.zeros(self.op("Concat", n, n, axis=0), like)
        identity = self.op("Unsqueeze", self.op("EyeLike", square), self.ints([0, 1]))
        (response,) = self.copy_node(node, [identity, *inputs], 1, drop=drop, **attrs)
        return self.op("Squeeze", response, self.ints([0, 1]))

    def apply_axis_matrix(self, g: str, axis: int, rank: int, m: str) -> str:
        """``out[…, i, …] = Σ_o m[i, o] · g[…, o, …]`` along ``axis``."""
        if axis == rank - 1:
            return self.op("MatMul", g, self.op("Transpose", m))
        perm = list(range(rank))
        perm[axis], perm[-1] = perm[-1], perm[axis]
        moved = self.op("Transpose", g, perm=perm)
        mapped = self.op("MatMul", moved, self.op("Transpose", m))
        return self.op("Transpose", mapped, perm=perm)


def _same_dim(a: Dim, b: Dim) -> bool:
    # One dim_param names one size within a graph, so equal names are equal sizes.
    return a is not None and a == b


def _broadcast_axes(x: tuple[Dim, ...], g: tuple[Dim, ...]) -> list[int] | None:
    """Axes of ``g`` that broadcasting created from ``x``, or None if that needs run time."""
    lead = len(g) - len(x)
    if lead < 0:
        return None
    axes = list(range(lead))
    for i, (xd, gd) in enumerate(zip(x, g[lead:], strict=True), start=lead):
        if _same_dim(xd, gd):
            continue
        if xd == 1:
            axes.append(i)
            continue
        return None
    return axes


def broadcast_shape(*shapes: tuple[Dim, ...] | None) -> tuple[Dim, ...] | None:
    """The numpy broadcast of static shapes, or None where it is not known statically."""
    if any(s is None for s in shapes):
        return None
    rank = max(len(s) for s in shapes)  # type: ignore[arg-type]
    out: list[Dim] = []
    for i in range(rank):
        dims = {s[i - rank + len(s)] for s in shapes if i - rank + len(s) >= 0}  # type: ignore[index,arg-type]
        dims.discard(1)
        if len(dims) > 1 or None in dims:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)
