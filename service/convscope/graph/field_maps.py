"""The data of the receptive-field pass (``receptive_field.py``): per spatial axis, the input
pixels each unit sees, and the composition of those maps through one op's taps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import onnx
from onnx import helper
from onnx.reference import ReferenceEvaluator

from convscope.graph.analysis import node_attributes, producers
from convscope.graph.common import constant_value
from convscope.model.types import ReceptiveField

# A unit that reads no input pixel (a constant-padded border): its interval is empty.
EMPTY_LO = np.iinfo(np.int64).max // 4
EMPTY_HI = -EMPTY_LO
# Constant subgraphs larger than this are not evaluated (pads and scales take a handful of nodes).
MAX_CONSTANT_NODES = 64


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
            stride=(sy, sx),
            size=(ry, rx),
            offset=(oy + (ry - 1) / 2, ox + (rx - 1) / 2),
            global_context=self.global_context,
        )


@dataclass(frozen=True)
class FieldContext:
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
            nodes,
            "constant",
            [],
            [onnx.ValueInfoProto(name=name)],
            initializer=[initializers[name] for name in used if name in initializers],
        )
        folded = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        try:
            (value,) = ReferenceEvaluator(folded).run(None, {})
        except Exception:  # an op the reference runtime lacks: the value stays unknown
            return None
        return np.asarray(value)


def identity_axis(size: int) -> AxisMap:
    lo = np.arange(size, dtype=np.int64)
    return AxisMap(lo, lo + 1, (1, 1, 0))


def through(axis: AxisMap, taps: np.ndarray, virtual: np.ndarray | None, nominal_stride: int) -> AxisMap:
    """Compose: output unit ``o`` reads input units ``taps[o]`` (−1: none).

    ``virtual`` are the taps before clipping to the input (NaN: none), for the affine summary;
    ``nominal_stride`` is the stride to report when there is a single output unit.
    """
    valid = taps >= 0
    index = np.where(valid, taps, 0)
    lo = np.where(valid, axis.lo[index], EMPTY_LO).min(axis=1) if taps.shape[1] else np.full(len(taps), EMPTY_LO)
    hi = np.where(valid, axis.hi[index], EMPTY_HI).max(axis=1) if taps.shape[1] else np.full(len(taps), EMPTY_HI)
    return AxisMap(lo.astype(np.int64), hi.astype(np.int64), _affine(axis.affine, virtual, nominal_stride))


def _affine(before: tuple[int, int, int] | None, virtual: np.ndarray | None, nominal_stride: int) -> tuple[int, int, int] | None:
    if before is None or virtual is None or not len(virtual) or np.isnan(virtual).all(axis=1).any():
        return None
    first, last = np.nanmin(virtual, axis=1), np.nanmax(virtual, axis=1)
    units = np.arange(len(first))
    step = first[1] - first[0] if len(first) > 1 else float(nominal_stride)
    span = last[0] - first[0]
    if (
        step < 0
        or not np.array_equal(first, first[0] + step * units)
        or not np.array_equal(last - first, np.full_like(first, span))
    ):
        return None
    if step != int(step) or first[0] != int(first[0]) or span != int(span):
        return None
    stride, size, start = before
    return stride * int(step), size + int(span) * stride, start + int(first[0]) * stride


def restrict(virtual: np.ndarray, size: int) -> np.ndarray:
    inside = ~np.isnan(virtual) & (virtual >= 0) & (virtual < size)
    return np.where(inside, np.nan_to_num(virtual), -1).astype(np.int64)


def axes_argument(node: onnx.NodeProto, context: FieldContext, attribute_until: int, input_index: int = 1) -> list[int] | None:
    """``axes`` as an attribute (older opsets) or a constant input; None if given but not constant."""
    attributes = node_attributes(node)
    if "axes" in attributes:
        return [int(a) for a in attributes["axes"]]  # type: ignore[attr-defined]
    if context.opset >= attribute_until and len(node.input) > input_index and node.input[input_index]:
        value = context.constant(node.input[input_index])
        return None if value is None else [int(a) for a in np.asarray(value).ravel()]
    return []


def source_coordinates(out: np.ndarray, transform: str, scale: np.float32, size: int, length: int) -> np.ndarray:
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


def round_coordinates(x: np.ndarray, mode: str) -> np.ndarray:
    if mode == "floor":
        return np.floor(x)
    if mode == "ceil":
        return np.ceil(x)
    halfway = (x - np.floor(x)) == 0.5
    if mode == "round_prefer_ceil":
        return np.where(halfway, np.ceil(x), np.round(x))
    return np.where(halfway, np.floor(x), np.round(x))  # round_prefer_floor
