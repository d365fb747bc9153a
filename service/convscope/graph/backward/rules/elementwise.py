"""Elementwise ops: activations (with the guided/deconvnet rectifiers), arithmetic
with numpy broadcasting, and the pass-through ops.

Kinks follow torch, because torch is the oracle users compare against: ReLU's
gradient at 0 is 0, Clip's is 1 only strictly inside (like ``hardtanh``/``relu6``),
LeakyReLU at 0 uses the slope, Abs at 0 is 0, HardSwish follows torch's
``x ≤ −3 → 0, x < 3 → x/3 + ½, else 1``, and ties in Max/Min split the gradient
evenly between the tied inputs (torch's ``maximum`` halves it between two).
"""

from __future__ import annotations

import math

from ..emitter import Dim, broadcast_shape
from ._registry import Vjp, rule


def _times(v: Vjp, factor: str) -> dict[int, str]:
    return {0: v.e.op("Mul", v.dy(), factor)}


def _masked(v: Vjp, mask: str, g: str) -> str:
    """``g`` where ``mask`` holds, else 0.

    ``g · Cast(mask)``, not ``Where(mask, g, 0)``: onnxruntime's Where is slow.  Measured
    on the whole backward graph (onnxruntime 1.31, 2 CPU cores, interleaved minima):
    EfficientNet-Lite0 with its 33 ReLU6 masks 35.5 → 29.6 ms at batch 1 and 324 → 251 ms
    at batch 8, ResNet-18 51.4 → 49.4 ms.  The two agree exactly for every finite ``g``
    (``g·1 = g``, ``g·0 = ±0``); they differ only where ``g`` is ±inf or NaN inside the
    masked-out region, where torch (and Where) give 0 and this gives NaN.  An upstream
    gradient that overflowed is meaningless either way.
    """
    elem_type = v.e.info(v.y()).elem_type
    ones = v.e.op("Cast", mask, to=elem_type) if elem_type else v.e.op("CastLike", mask, v.y())
    return v.e.op("Mul", g, ones)


def _rectified(v: Vjp, mask: str) -> str:
    """The gradient of a ReLU-like unit whose pass-through region is ``mask``."""
    if v.options.rectifier == "deconvnet":
        return v.e.op("Relu", v.dy())
    g = v.e.op("Relu", v.dy()) if v.options.rectifier == "guided" else v.dy()
    return _masked(v, mask, g)


@rule("Relu")
def _relu(v: Vjp) -> dict[int, str]:
    # Masks come from the output so a Conv+Relu fused by an exporter still works.
    return {0: _rectified(v, v.e.op("Greater", v.y(), v.e.scalar(0.0, v.y())))}


@rule("Clip", inputs=None)
def _clip(v: Vjp) -> dict[int, str]:
    # The mask is read off the output: for Y = clip(X), min < X < max exactly when
    # min < Y < max (outside, Y sits on a bound; the strict tests reject it).  Leaving X
    # to the Conv that made it lets onnxruntime fuse Conv+Clip in the forward part.
    e, y = v.e, v.y()
    lo, hi = v.x(1), v.x(2)
    bounds = [e.op("Greater", y, lo)] if lo else []
    bounds += [e.op("Less", y, hi)] if hi else []
    if not bounds:
        return {0: v.dy()}
    mask = bounds[0] if len(bounds) == 1 else e.op("And", *bounds)
    lo_value = v.const_value(lo)
    relu_like = lo_value is not None and lo_value.size == 1 and float(lo_value) == 0.0
    if relu_like and v.options.rectifiers == "all":
        return {0: _rectified(v, mask)}
    return {0: _masked(v, mask, v.dy())}


@rule("LeakyRelu")
def _leaky_relu(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    alpha = v.attr("alpha", 0.01)
    # With α ≥ 0, Y > 0 exactly when X > 0; reading Y leaves Conv+LeakyRelu fusable.
    side = v.y() if alpha >= 0 else x
    scaled = e.op("Mul", v.dy(), e.scalar(alpha, x))
    return {0: e.op("Where", e.op("Greater", side, e.scalar(0.0, x)), v.dy(), scaled)}


@rule("PRelu", inputs=None)
def _prelu(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    scaled = e.op("Mul", v.dy(), v.x(1))
    return {0: e.op("Where", e.op("Greater", x, e.scalar(0.0, x)), v.dy(), scaled)}


@rule("Sigmoid")
def _sigmoid(v: Vjp) -> dict[int, str]:
    e, y = v.e, v.y()
    return _times(v, e.op("Mul", y, e.op("Sub", e.scalar(1.0, y), y)))


@rule("Tanh")
def _tanh(v: Vjp) -> dict[int, str]:
    e, y = v.e, v.y()
    return _times(v, e.op("Sub", e.scalar(1.0, y), e.op("Mul", y, y)))


@rule("HardSigmoid")
def _hard_sigmoid(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    alpha = e.scalar(v.attr("alpha", 0.2), x)
    # Same arithmetic as the forward op, so the open interval ends where its kinks are.
    t = e.op("Add", e.op("Mul", x, alpha), e.scalar(v.attr("beta", 0.5), x))
    inside = e.op("And", e.op("Greater", t, e.scalar(0.0, x)), e.op("Less", t, e.scalar(1.0, x)))
    return {0: _masked(v, inside, e.op("Mul", v.dy(), alpha))}


@rule("HardSwish")
def _hard_swish(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    slope = e.op("Add", e.op("Div", x, e.scalar(3.0, x)), e.scalar(0.5, x))
    inner = e.op("Where", e.op("Less", x, e.scalar(3.0, x)), slope, e.scalar(1.0, x))
    factor = e.op("Where", e.op("LessOrEqual", x, e.scalar(-3.0, x)), e.scalar(0.0, x), inner)
    return _times(v, factor)


@rule("Exp")
def _exp(v: Vjp) -> dict[int, str]:
    return _times(v, v.y())


@rule("Log")
def _log(v: Vjp) -> dict[int, str]:
    return {0: v.e.op("Div", v.dy(), v.x(0))}


@rule("Sqrt")
def _sqrt(v: Vjp) -> dict[int, str]:
    e, y = v.e, v.y()
    return {0: e.op("Div", v.dy(), e.op("Mul", y, e.scalar(2.0, y)))}


@rule("Reciprocal")
def _reciprocal(v: Vjp) -> dict[int, str]:
    e, y = v.e, v.y()
    return {0: e.op("Neg", e.op("Mul", v.dy(), e.op("Mul", y, y)))}


@rule("Neg")
def _neg(v: Vjp) -> dict[int, str]:
    return {0: v.e.op("Neg", v.dy())}


@rule("Abs")
def _abs(v: Vjp) -> dict[int, str]:
    return _times(v, v.e.op("Sign", v.x(0)))


@rule("Erf")
def _erf(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    density = e.op("Exp", e.op("Neg", e.op("Mul", x, x)))
    return _times(v, e.op("Mul", density, e.scalar(2.0 / math.sqrt(math.pi), x)))


@rule("Gelu")
def _gelu(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    half, one = e.scalar(0.5, x), e.scalar(1.0, x)
    if v.attr("approximate", "none") == "tanh":
        # torch's GeluBackward for approximate="tanh", term by term.
        beta, kappa = math.sqrt(2.0 / math.pi), 0.044715
        x2 = e.op("Mul", x, x)
        inner = e.op("Mul", e.scalar(beta, x), e.op("Add", x, e.op("Mul", e.scalar(kappa, x), e.op("Mul", x2, x))))
        th = e.op("Tanh", inner)
        left = e.op("Mul", half, e.op("Add", one, th))
        d_inner = e.op("Mul", e.scalar(beta, x), e.op("Add", one, e.op("Mul", e.scalar(3 * kappa, x), x2)))
        right = e.op("Mul", e.op("Mul", e.op("Mul", half, x), e.op("Sub", one, e.op("Mul", th, th))), d_inner)
        return _times(v, e.op("Add", left, right))
    cdf = e.op("Mul", half, e.op("Add", one, e.op("Erf", e.op("Mul", x, e.scalar(math.sqrt(0.5), x)))))
    pdf = e.op("Mul", e.op("Exp", e.op("Mul", e.op("Mul", x, x), e.scalar(-0.5, x))), e.scalar(1.0 / math.sqrt(2.0 * math.pi), x))
    return _times(v, e.op("Add", cdf, e.op("Mul", x, pdf)))


@rule("Softplus")
def _softplus(v: Vjp) -> dict[int, str]:
    return _times(v, v.e.op("Sigmoid", v.x(0)))


@rule("Elu")
def _elu(v: Vjp) -> dict[int, str]:
    e, x, y = v.e, v.x(0), v.y()
    negative = e.op("Mul", v.dy(), e.op("Add", y, e.scalar(v.attr("alpha", 1.0), x)))
    return {0: e.op("Where", e.op("Greater", x, e.scalar(0.0, x)), v.dy(), negative)}


@rule("Mish")
def _mish(v: Vjp) -> dict[int, str]:
    e, x = v.e, v.x(0)
    th = e.op("Tanh", e.op("Softplus", x))
    sech2 = e.op("Sub", e.scalar(1.0, x), e.op("Mul", th, th))
    return _times(v, e.op("Add", th, e.op("Mul", e.op("Mul", x, sech2), e.op("Sigmoid", x))))


@rule("Identity", "Dropout")
def _identity(v: Vjp) -> dict[int, str]:
    if v.node.op_type == "Dropout" and v.x(2):
        training = v.const_value(v.x(2))
        if training is None or bool(training):
            raise v.unsupported("Dropout in training mode is random")
    return {0: v.dy()}


@rule("Cast")
def _cast(v: Vjp) -> dict[int, str]:
    # Only float→float casts reach here: others produce non-float tensors, off the path.
    return {0: v.e.op("CastLike", v.dy(), v.x(0))}


# -- broadcasting arithmetic -------------------------------------------------------


def _unbroadcast_all(v: Vjp, grads: dict[int, str]) -> dict[int, str]:
    """Sum each input's gradient down from the output's shape to the input's."""
    y_shape = v.e.info(v.y()).shape
    return {i: v.e.unbroadcast(g, v.x(i), y_shape) for i, g in grads.items()}


@rule("Add", "Sub", "Sum", "Mean", "Expand", inputs=None)
def _additive(v: Vjp) -> dict[int, str]:
    e, op = v.e, v.node.op_type
    g = v.dy()
    if op == "Mean":
        g = e.op("Div", g, e.scalar(float(len(v.node.input)), v.y()))
    grads = {i: g for i in range(len(v.node.input)) if v.need(i)}
    if op == "Sub" and 1 in grads:
        grads[1] = e.op("Neg", g)
    return _unbroadcast_all(v, grads)


@rule("Mul", inputs=None)
def _mul(v: Vjp) -> dict[int, str]:
    return _unbroadcast_all(v, {i: v.e.op("Mul", v.dy(), v.x(1 - i)) for i in (0, 1) if v.need(i)})


@rule("Div", inputs=None)
def _div(v: Vjp) -> dict[int, str]:
    e, a, b = v.e, v.x(0), v.x(1)
    grads = {}
    if v.need(0):
        grads[0] = e.op("Div", v.dy(), b)
    if v.need(1):
        grads[1] = e.op("Neg", e.op("Div", e.op("Mul", v.dy(), a), e.op("Mul", b, b)))
    return _unbroadcast_all(v, grads)


@rule("Pow", inputs=None)
def _pow(v: Vjp) -> dict[int, str]:
    if not v.need(0):
        return {}
    e, x, p = v.e, v.x(0), v.x(1)
    p_like = e.op("CastLike", p, x)
    d = e.op("Mul", p_like, e.op("Pow", x, e.op("Sub", p_like, e.scalar(1.0, x))))
    # torch defines the derivative of x**0 as 0 everywhere (0·x⁻¹ would be NaN at 0).
    d = e.op("Where", e.op("Equal", p_like, e.scalar(0.0, x)), e.scalar(0.0, x), d)
    return _unbroadcast_all(v, {0: e.op("Mul", v.dy(), d)})


@rule("Max", "Min", inputs=None)
def _extremum(v: Vjp) -> dict[int, str]:
    e, y = v.e, v.y()
    masks = [e.op("CastLike", e.op("Equal", x, y), y) for x in v.node.input]
    share = e.op("Div", v.dy(), masks[0] if len(masks) == 1 else e.op("Sum", *masks))
    return _unbroadcast_all(v, {i: e.op("Mul", share, m) for i, m in enumerate(masks) if v.need(i)})


@rule("Where", inputs=(1, 2))
def _where_op(v: Vjp) -> dict[int, str]:
    e, cond = v.e, v.x(0)
    zero = e.scalar(0.0, v.y())
    grads = {}
    if v.need(1):
        grads[1] = e.op("Where", cond, v.dy(), zero)
    if v.need(2):
        grads[2] = e.op("Where", cond, zero, v.dy())
    return _unbroadcast_all(v, grads)


@rule("MatMul", inputs=None)
def _matmul(v: Vjp) -> dict[int, str]:
    """``dA = dY·Bᵀ``, ``dB = Aᵀ·dY`` on the last two axes, with numpy's 1-D promotion."""
    e, a, b = v.e, v.x(0), v.x(1)
    ra, rb = v.static_rank(a), v.static_rank(b)
    a2 = a if ra >= 2 else e.op("Unsqueeze", a, e.ints([0]))
    b2 = b if rb >= 2 else e.op("Unsqueeze", b, e.ints([1]))
    if ra == 1 and rb == 1:
        g = e.op("Reshape", v.dy(), e.ints([1, 1]))
    elif ra == 1:
        g = e.op("Unsqueeze", v.dy(), e.ints([-2]))
    elif rb == 1:
        g = e.op("Unsqueeze", v.dy(), e.ints([-1]))
    else:
        g = v.dy()

    def swap_last(t: str, rank: int) -> str:
        perm = list(range(max(rank, 2)))
        perm[-2], perm[-1] = perm[-1], perm[-2]
        return e.op("Transpose", t, perm=perm)

    def batch(name: str, rank: int) -> tuple[Dim, ...] | None:
        shape = e.info(name).shape
        return () if rank < 2 else None if shape is None else shape[:-2]

    batch_shape = broadcast_shape(batch(a, ra), batch(b, rb))

    def shaped_like(product: str, src: str, promoted: str) -> str:
        # A promoted 1-D operand has no static shape, so its batch sum is found at run time.
        shape = e.info(promoted).shape
        g_shape = None if batch_shape is None or shape is None else batch_shape + shape[-2:]
        summed = e.unbroadcast(product, promoted, g_shape)
        return summed if promoted == src else e.reshape_like(summed, src)

    grads = {}
    if v.need(0):
        grads[0] = shaped_like(e.op("MatMul", g, swap_last(b2, rb)), a, a2)
    if v.need(1):
        grads[1] = shaped_like(e.op("MatMul", swap_last(a2, ra), g), b, b2)
    return grads
