"""Linear layers: Conv, ConvTranspose, Gemm, and the inference-time normalizations.

Conv and ConvTranspose are each other's adjoint on the *unpadded* extent, so both
gradients are computed there (no pads, no output_padding) and then shifted and
cropped or zero-extended to the input with ``Emitter.fit``.  That one formulation
covers explicit and asymmetric pads, every ``auto_pad`` mode, strides that do not
divide the input (the rows the last window never reached get zero, which is what
``output_padding = (H + pads − d(k−1) − 1) mod s`` would add), ConvTranspose's
``output_padding``/``output_shape``, and spatial sizes known only at run time.
"""

from __future__ import annotations

from convscope.errors import InvalidArgument

from ._registry import Vjp, rule


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


@rule("Conv", inputs=None)
def _conv(v: Vjp) -> dict[int, str]:
    if not v.need(0):
        return {}
    e, x, w = v.e, v.x(0), v.x(1)
    n = _spatial_rank(v)
    strides, dilations = v.attr("strides") or [1] * n, v.attr("dilations") or [1] * n
    unpadded = e.op("ConvTranspose", v.dy(), w, strides=strides, dilations=dilations,
                    group=v.attr("group", 1))
    size = e.shape(x, start=2)
    if v.attr("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        s, d = e.ints(strides), e.ints(dilations)
        out = e.op("Div", e.op("Add", size, e.op("Sub", s, e.ints(1))), s)
        reach = e.op("Add", e.op("Mul", e.op("Sub", out, e.ints(1)), s),
                     e.op("Add", e.op("Mul", d, e.op("Sub", _kernel(v), e.ints(1))), e.ints(1)))
        begin = _same_split(v, e.op("Sub", reach, size))
    else:
        begin = _explicit_begin_pads(v, n)
    return {0: e.fit(unpadded, range(2, 2 + n), e.op("Neg", begin), size)}


@rule("ConvTranspose", inputs=None)
def _conv_transpose(v: Vjp) -> dict[int, str]:
    if not v.need(0):
        return {}
    e, x, w = v.e, v.x(0), v.x(1)
    n = _spatial_rank(v)
    strides, dilations = v.attr("strides") or [1] * n, v.attr("dilations") or [1] * n
    s, d = e.ints(strides), e.ints(dilations)
    # Length of the full (unpadded, no output_padding) transposed convolution.
    reach = e.op("Add", e.op("Mul", s, e.op("Sub", e.shape(x, start=2), e.ints(1))),
                 e.op("Add", e.op("Mul", d, e.op("Sub", _kernel(v), e.ints(1))), e.ints(1)))
    if v.attr("output_shape") or v.attr("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        extra = e.ints(v.attr("output_padding") or [0] * n)
        total = e.op("Sub", e.op("Add", reach, extra), e.shape(v.y(), start=2))
        begin = _same_split(v, total)
    else:
        begin = _explicit_begin_pads(v, n)
    aligned = e.fit(v.dy(), range(2, 2 + n), begin, reach)
    return {0: e.op("Conv", aligned, w, strides=strides, dilations=dilations,
                    group=v.attr("group", 1))}


@rule("Gemm", inputs=None)
def _gemm(v: Vjp) -> dict[int, str]:
    """``Y = α·op(A)·op(B) + β·C``; each gradient is one more Gemm with flipped transposes."""
    e, a, b, c = v.e, v.x(0), v.x(1), v.x(2)
    alpha, beta = v.attr("alpha", 1.0), v.attr("beta", 1.0)
    ta, tb = v.attr("transA", 0), v.attr("transB", 0)
    grads = {}
    if v.need(0):
        grads[0] = (e.op("Gemm", b, v.dy(), alpha=alpha, transA=tb, transB=1) if ta
                    else e.op("Gemm", v.dy(), b, alpha=alpha, transB=1 - tb))
    if v.need(1):
        grads[1] = (e.op("Gemm", v.dy(), a, alpha=alpha, transA=1, transB=ta) if tb
                    else e.op("Gemm", a, v.dy(), alpha=alpha, transA=1 - ta))
    if v.need(2):
        scaled = e.op("Mul", v.dy(), e.scalar(beta, v.y()))
        grads[2] = e.unbroadcast(scaled, c, e.info(v.y()).shape)
    return grads


@rule("BatchNormalization", inputs=None)
def _batch_norm(v: Vjp) -> dict[int, str]:
    """Inference BN is affine in X with slope ``scale/√(var+ε)``: BN itself with B = mean = 0."""
    if v.attr("training_mode", 0):
        raise InvalidArgument(
            f"BatchNormalization node {v.node.name!r} is in training mode; "
            "gradient maps need an inference-mode model")
    if not v.need(0):
        return {}
    e = v.e
    scale, bias, mean, var = (v.x(i) for i in range(1, 5))
    return {0: e.op("BatchNormalization", v.dy(), scale, e.zeros_like(bias), e.zeros_like(mean),
                    var, epsilon=v.attr("epsilon", 1e-5))}


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
