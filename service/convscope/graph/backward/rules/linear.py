"""Linear layers: Conv, ConvTranspose, Gemm, and the inference-time normalizations.

The Conv gradient is a transposed convolution of ``dY``.  How it is emitted matters
more than anything else for speed (onnxruntime's CPU ConvTranspose is slow, above
all for depthwise kernels), so when the geometry is known at build time it is
written in the op onnxruntime runs fastest, with every pad and size a constant:

* stride 1: a ``Conv`` of ``dY`` with the kernel transposed per group and flipped,
  padded by ``d(k−1) − pad`` (a negative amount crops ``dY`` first).  None of this
  depends on the spatial size, so it also serves inputs of any size;
* strided and depthwise: ``dY`` spread out with ``s − 1`` zeros between samples
  (nearest-neighbour Resize times a 0/1 lattice), then the same flipped ``Conv``;
* strided and dense: one ``ConvTranspose`` with the forward pads and
  ``output_padding = (H + pads − d(k−1) − 1) mod s`` (it beats a zero-spread Conv,
  which does ``s^n`` times the work).

The flipped kernels are computed in numpy when the weight is a constant (it is in
inference models) and stored as initializers.  Strided convolutions need the input's
spatial size; when shape inference could not tell it, or the weight is only known at
run time, the general formulation below is used.

General formulation: Conv and ConvTranspose are each other's adjoint on the
*unpadded* extent, so both gradients are computed there (no pads, no output_padding)
and then shifted and cropped or zero-extended to the input with ``Emitter.fit``.
That covers explicit and asymmetric pads, every ``auto_pad`` mode, strides that do
not divide the input (the rows the last window never reached get zero, which is what
``output_padding`` would add), ConvTranspose's ``output_padding``/``output_shape``,
and spatial sizes known only at run time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convscope.errors import InvalidArgument
from convscope.graph.analysis import node_attributes, window_pads

from ._registry import Vjp, rule

INT64_MAX = 2**63 - 1


def _spatial_rank(v: Vjp) -> int:
    kernel = v.attr("kernel_shape")
    return len(kernel) if kernel else v.static_rank(v.x(1)) - 2


def _kernel(v: Vjp) -> str:
    kernel = v.attr("kernel_shape")
    return v.e.ints(kernel) if kernel else v.e.shape(v.x(1), start=2)


def _same_split(v: Vjp, total: str) -> str:
    """The leading pad of an ``auto_pad=SAME_*`` total: UPPER puts the odd one at the end."""
    e = v.e
    total = e.op("Max", total, e.ints([0] * _spatial_rank(v)))
    half = e.op("Div", total, e.ints(2))
    return half if v.attr("auto_pad") == "SAME_UPPER" else e.op("Sub", total, half)


def _explicit_begin_pads(v: Vjp, n: int) -> str:
    if v.attr("auto_pad", "NOTSET") == "VALID":
        return v.e.ints([0] * n)
    return v.e.ints((v.attr("pads") or [0] * 2 * n)[:n])


# -- Conv with its geometry known at build time -------------------------------------


@dataclass(frozen=True)
class _Geometry:
    """A Conv's spatial geometry, every number known when the graph is built."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    begin: tuple[int, ...]
    end: tuple[int, ...]
    size: tuple[int, ...] | None
    """The input's spatial size; None (only allowed at stride 1) when known at run time only."""

    @property
    def reach(self) -> tuple[int, ...]:
        """``d(k−1)``: how far a window extends past its first tap."""
        return tuple(d * (k - 1) for d, k in zip(self.dilations, self.kernel, strict=True))

    @property
    def strided(self) -> bool:
        return any(s > 1 for s in self.strides)

    def out(self) -> tuple[int, ...]:
        assert self.size is not None
        return tuple(
            (h + b + e - r - 1) // s + 1
            for h, b, e, r, s in zip(self.size, self.begin, self.end, self.reach, self.strides, strict=True)
        )


def _static_kernel(v: Vjp) -> tuple[int, ...] | None:
    kernel = v.attr("kernel_shape")
    return tuple(kernel) if kernel else v.e.static_spatial(v.x(1))


def _geometry(v: Vjp) -> _Geometry | None:
    """The Conv's geometry with ``auto_pad`` resolved, or None where it needs run-time sizes."""
    kernel = _static_kernel(v)
    if kernel is None:
        return None
    n = len(kernel)
    strides = tuple(v.attr("strides") or [1] * n)
    dilations = tuple(v.attr("dilations") or [1] * n)
    size = v.e.static_spatial(v.x(0))
    if size is not None and len(size) != n:
        size = None
    if size is None and any(s > 1 for s in strides):
        return None  # output_padding and the zero lattice depend on the size
    extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilations, strict=True)]
    pads = window_pads(node_attributes(v.node), extents, strides, size or (None,) * n)
    begin, end = tuple(p[0] for p in pads), tuple(p[1] for p in pads)
    geometry = _Geometry(kernel, strides, dilations, begin, end, size)
    if size is not None and min(geometry.out()) < 1:
        return None  # an empty output: leave it to the general formulation
    return geometry


def _flipped(w: np.ndarray, group: int) -> np.ndarray:
    """``[C_out, C_in/g, k…]`` → ``[C_in, C_out/g, k…]`` transposed within each group, flipped."""
    c_out, c_in_g, *kernel = w.shape
    t = w.reshape(group, c_out // group, c_in_g, *kernel).swapaxes(1, 2)
    t = t.reshape(group * c_in_g, c_out // group, *kernel)
    return np.flip(t, axis=tuple(range(2, t.ndim)))


def _zero_spread(v: Vjp, g: str, out: tuple[int, ...], strides: tuple[int, ...], dtype: np.dtype) -> str:
    """``z[…, o·s] = g[…, o]`` and zero elsewhere, ``o·s`` long on each spatial axis.

    Nearest-neighbour Resize, then times a constant 0/1 lattice.  Measured on
    EfficientNet's strided depthwise layers (onnxruntime 1.31, CPU): 1.2–3× faster than
    ConvTranspose, while Unsqueeze → Pad → Reshape and Concat(zeros) → DepthToSpace
    were slower than ConvTranspose.
    """
    e = v.e
    scales = np.array([1.0, 1.0, *strides], np.float32)
    # asymmetric + floor: output position i reads input ⌊i/s⌋ exactly, so o·s reads o.
    spread = e.op(
        "Resize", g, "", e.const(scales), mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"
    )
    size = tuple(o * s for o, s in zip(out, strides, strict=True))

    def lattice() -> np.ndarray:
        ones = np.zeros((1, 1, *size), dtype)
        ones[(..., *(slice(None, None, s) for s in strides))] = 1
        return ones

    key = ("lattice", dtype.str, *map(str, size), *map(str, strides))
    return e.op("Mul", spread, e.initializer(key, lattice))


def _static_conv_grad(v: Vjp, geo: _Geometry) -> str:
    """dX for a Conv whose geometry is known (see the module docstring)."""
    e, w_name = v.e, v.x(1)
    group = v.attr("group", 1)
    n = len(geo.kernel)
    w = v.const_value(w_name)
    if w is not None and (w.dtype.kind != "f" or w.ndim != n + 2 or w.shape[0] % group):
        w = None
    depthwise = w is not None and group > 1 and w.shape[0] == group and w.shape[1] == 1
    if w is None or (geo.strided and not depthwise):
        # One ConvTranspose, its output exactly the input's size.
        extra = [0] * n
        if geo.size is not None:
            extra = [
                (h + b + en - r - 1) % s
                for h, b, en, r, s in zip(geo.size, geo.begin, geo.end, geo.reach, geo.strides, strict=True)
            ]
        return e.op(
            "ConvTranspose",
            v.dy(),
            w_name,
            strides=list(geo.strides),
            dilations=list(geo.dilations),
            group=group,
            pads=[*geo.begin, *geo.end],
            output_padding=extra,
        )
    weight: np.ndarray = w
    # Correlate z (dY, spread out when strided) with the flipped kernel: z needs
    # d(k−1) − pad_begin zeros in front and enough behind for H outputs.
    z = v.dy()
    lead = [r - b for r, b in zip(geo.reach, geo.begin, strict=True)]
    if geo.strided:
        assert geo.size is not None
        out = geo.out()
        z = _zero_spread(v, z, out, geo.strides, weight.dtype)
        trail = [h + b - o * s for h, b, o, s in zip(geo.size, geo.begin, out, geo.strides, strict=True)]
    else:
        trail = [r - en for r, en in zip(geo.reach, geo.end, strict=True)]
    if min(lead + trail) < 0:
        # Pads wider than the kernel's reach: the outermost outputs saw only padding.
        starts = [max(-a, 0) for a in lead]
        ends = [t if t < 0 else INT64_MAX for t in trail]
        z = e.op("Slice", z, e.ints(starts), e.ints(ends), e.ints(list(range(2, 2 + n))))
    flipped = e.initializer(("flipped", w_name, str(group)), lambda: _flipped(weight, group))
    return e.op("Conv", z, flipped, pads=[max(p, 0) for p in lead + trail], dilations=list(geo.dilations), group=group)


@rule("Conv", inputs=None)
def _conv(v: Vjp) -> dict[int, str]:
    if not v.need(0):
        return {}
    geo = _geometry(v)
    return {0: _conv_general(v) if geo is None else _static_conv_grad(v, geo)}


def _conv_general(v: Vjp) -> str:
    """dX for any Conv: ConvTranspose on the unpadded extent, fitted at run time."""
    e, x, w = v.e, v.x(0), v.x(1)
    n = _spatial_rank(v)
    strides, dilations = v.attr("strides") or [1] * n, v.attr("dilations") or [1] * n
    unpadded = e.op("ConvTranspose", v.dy(), w, strides=strides, dilations=dilations, group=v.attr("group", 1))
    size = e.shape(x, start=2)
    if v.attr("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        s, d = e.ints(strides), e.ints(dilations)
        out = e.op("Div", e.op("Add", size, e.op("Sub", s, e.ints(1))), s)
        reach = e.op(
            "Add",
            e.op("Mul", e.op("Sub", out, e.ints(1)), s),
            e.op("Add", e.op("Mul", d, e.op("Sub", _kernel(v), e.ints(1))), e.ints(1)),
        )
        begin = _same_split(v, e.op("Sub", reach, size))
    else:
        begin = _explicit_begin_pads(v, n)
    return e.fit(unpadded, range(2, 2 + n), e.op("Neg", begin), size)


@rule("ConvTranspose", inputs=None)
def _conv_transpose(v: Vjp) -> dict[int, str]:
    if not v.need(0):
        return {}
    e, x, w = v.e, v.x(0), v.x(1)
    n = _spatial_rank(v)
    strides, dilations = v.attr("strides") or [1] * n, v.attr("dilations") or [1] * n
    auto_pad = v.attr("auto_pad", "NOTSET")
    extra = v.attr("output_padding") or [0] * n
    if not v.attr("output_shape") and auto_pad in ("NOTSET", "VALID") and all(p < s for p, s in zip(extra, strides, strict=True)):
        # Y is the full transposed conv (output_padding rows included) cropped by the pads,
        # so a Conv of dY with the same pads lines up exactly, and its last window stops
        # short of the output_padding rows, which no input reached.  No sizes needed.
        pads = v.attr("pads") if auto_pad == "NOTSET" and v.attr("pads") else [0] * 2 * n
        return {0: e.op("Conv", v.dy(), w, strides=strides, dilations=dilations, group=v.attr("group", 1), pads=pads)}
    s, d = e.ints(strides), e.ints(dilations)
    # Length of the full (unpadded, no output_padding) transposed convolution.
    reach = e.op(
        "Add",
        e.op("Mul", s, e.op("Sub", e.shape(x, start=2), e.ints(1))),
        e.op("Add", e.op("Mul", d, e.op("Sub", _kernel(v), e.ints(1))), e.ints(1)),
    )
    if v.attr("output_shape") or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        total = e.op("Sub", e.op("Add", reach, e.ints(extra)), e.shape(v.y(), start=2))
        begin = _same_split(v, total)
    else:
        begin = _explicit_begin_pads(v, n)
    aligned = e.fit(v.dy(), range(2, 2 + n), begin, reach)
    return {0: e.op("Conv", aligned, w, strides=strides, dilations=dilations, group=v.attr("group", 1))}


@rule("Gemm", inputs=None)
def _gemm(v: Vjp) -> dict[int, str]:
    """``Y = α·op(A)·op(B) + β·C``; each gradient is one more Gemm with flipped transposes."""
    e, a, b, c = v.e, v.x(0), v.x(1), v.x(2)
    alpha, beta = v.attr("alpha", 1.0), v.attr("beta", 1.0)
    ta, tb = v.attr("transA", 0), v.attr("transB", 0)
    grads = {}
    if v.need(0):
        grads[0] = (
            e.op("Gemm", b, v.dy(), alpha=alpha, transA=tb, transB=1)
            if ta
            else e.op("Gemm", v.dy(), b, alpha=alpha, transB=1 - tb)
        )
    if v.need(1):
        grads[1] = (
            e.op("Gemm", v.dy(), a, alpha=alpha, transA=1, transB=ta)
            if tb
            else e.op("Gemm", a, v.dy(), alpha=alpha, transA=1 - ta)
        )
    if v.need(2):
        scaled = e.op("Mul", v.dy(), e.scalar(beta, v.y()))
        grads[2] = e.unbroadcast(scaled, c, e.info(v.y()).shape)
    return grads


@rule("BatchNormalization", inputs=None)
def _batch_norm(v: Vjp) -> dict[int, str]:
    """Inference BN is affine in X with slope ``scale/√(var+ε)``: BN itself with B = mean = 0."""
    if v.attr("training_mode", 0):
        raise InvalidArgument(
            f"BatchNormalization node {v.node.name!r} is in training mode; gradient maps need an inference-mode model"
        )
    if not v.need(0):
        return {}
    e = v.e
    scale, bias, mean, var = (v.x(i) for i in range(1, 5))
    return {
        0: e.op("BatchNormalization", v.dy(), scale, e.zeros_like(bias), e.zeros_like(mean), var, epsilon=v.attr("epsilon", 1e-5))
    }


def _normalized_grad(v: Vjp, g: str, axes: list[int], epsilon: float) -> str:
    """Gradient of ``(x − mean)/√(var + ε)`` over ``axes`` for an upstream gradient ``g``."""
    e, x = v.e, v.x(0)
    axes_t = e.ints(axes)
    centered = e.op("Sub", x, e.op("ReduceMean", x, axes_t, keepdims=1))
    var = e.op("ReduceMean", e.op("Mul", centered, centered), axes_t, keepdims=1)
    inv_std = e.op("Reciprocal", e.op("Sqrt", e.op("Add", var, e.scalar(epsilon, x))))
    x_hat = e.op("Mul", centered, inv_std)
    mean_g = e.op("ReduceMean", g, axes_t, keepdims=1)
    mean_gx = e.op("ReduceMean", e.op("Mul", g, x_hat), axes_t, keepdims=1)
    return e.op("Mul", inv_std, e.op("Sub", e.op("Sub", g, mean_g), e.op("Mul", x_hat, mean_gx)))


@rule("LayerNormalization", inputs=None)
def _layer_norm(v: Vjp) -> dict[int, str]:
    if not v.need(0):
        return {}
    rank = v.static_rank(v.x(0))
    axis = v.attr("axis", -1) % rank
    g = v.e.op("Mul", v.dy(), v.x(1))
    return {0: _normalized_grad(v, g, list(range(axis, rank)), v.attr("epsilon", 1e-5))}


@rule("InstanceNormalization", inputs=None)
def _instance_norm(v: Vjp) -> dict[int, str]:
    if not v.need(0):
        return {}
    e = v.e
    rank = v.static_rank(v.x(0))
    scale = e.op("Unsqueeze", v.x(1), e.ints(list(range(1, rank - 1))))
    g = e.op("Mul", v.dy(), scale)
    return {0: _normalized_grad(v, g, list(range(2, rank)), v.attr("epsilon", 1e-5))}
