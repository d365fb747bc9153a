"""graph/backward/rules/elementwise.py against torch.autograd: MatMul, the broadcasting binary and
variadic ops, the unary activations (with their kinks and ties, exactly as torch), and the
rectifier rules of guided backprop and deconvnet (also against Captum)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto

from convscope.graph.backward import build_backward, grad_output_name
from tests.graph.backward.harness import (
    Case,
    Shape,
    assert_close,
    check,
    check_ties,
    f32,
    hardsigmoid,
    make_model,
    node,
    rand,
    run_backward,
    unary,
)

MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((2, 3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((2, 3, 4), (4,)),
    ((4,), (4,)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((3, 4), (2, 4, 5)),
    ((2, 3, 4), (2, 4, 5)),
]
MATMUL_CASES = [
    Case(
        f"MatMul-{a}x{b}-{'sym' if sym else 'static'}",
        [node("MatMul", "a", "b")],
        {"a": a, "b": b},
        lambda a, b: a @ b,
        symbolic=sym,
    )
    for a, b in MATMUL_SHAPES
    for sym in (False, True)
]


# -- elementwise -------------------------------------------------------------------

BROADCAST_SHAPES = [
    ((2, 3, 4, 5), (2, 3, 4, 5)),
    ((2, 3, 4, 5), (3, 1, 1)),
    ((2, 3, 4, 5), (1,)),
    ((4, 5), (2, 3, 4, 5)),
    ((2, 1, 4, 1), (1, 3, 1, 5)),
    ((2, 3, 4, 5), ()),
]
BINARY = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "Max": torch.maximum, "Min": torch.minimum}
BINARY_CASES = [
    Case(
        f"{op}-{a}-{b}-{'sym' if sym else 'static'}",
        [node(op, "a", "b")],
        {"a": a, "b": b},
        lambda a, b, fn=fn: fn(a, b),
        symbolic=sym,
        opset=13 if op in ("Max", "Min") else 17,
        positive=op == "Div",
    )
    for op, fn in BINARY.items()
    for a, b in BROADCAST_SHAPES
    for sym in (False, True)
    if op in ("Add", "Mul") or sym or a == b
]

VARIADIC_CASES = [
    Case("Sum-3-broadcast", [node("Sum", "a", "b", "c")], {"a": (2, 3, 4), "b": (3, 1), "c": (4,)}, lambda a, b, c: a + b + c),
    Case(
        "Mean-3-broadcast",
        [node("Mean", "a", "b", "c")],
        {"a": (2, 3, 4), "b": (3, 1), "c": (4,)},
        lambda a, b, c: (a + b + c) / 3,
    ),
    Case(
        "Max-3",
        [node("Max", "a", "b", "c")],
        {"a": (2, 3, 4), "b": (3, 1), "c": (4,)},
        lambda a, b, c: torch.maximum(torch.maximum(a, b), c),
        symbolic=False,
    ),
    Case("Sum-1", [node("Sum", "a")], {"a": (2, 3)}, lambda a: a),
    Case(
        "Expand",
        [node("Expand", "x", "shape")],
        {"x": (2, 1, 4, 1)},
        lambda x, shape: x.expand(2, 3, 4, 5),
        {"shape": np.array([2, 3, 4, 5])},
    ),
    Case(
        "Expand-rank-up",
        [node("Expand", "x", "shape")],
        {"x": (4, 1)},
        lambda x, shape: x.expand(2, 4, 3),
        {"shape": np.array([2, 1, 3])},
    ),
    Case(
        "Where-const-cond",
        [node("Where", "cond", "a", "b")],
        {"a": (2, 3, 4), "b": (3, 1)},
        lambda a, b, cond: torch.where(cond, a, b),
        {"cond": np.random.default_rng(5).random((3, 4)) > 0.5},
    ),
    Case("Pow-const-3", [node("Pow", "x", "p")], {"x": (2, 3, 4)}, lambda x, p: x**p, {"p": np.array(3.0, np.float32)}),
    Case(
        "Pow-sqrt", [node("Pow", "x", "p")], {"x": (2, 3, 4)}, lambda x, p: x**p, {"p": np.array(0.5, np.float32)}, positive=True
    ),
    Case(
        "Pow-broadcast-exponent",
        [node("Pow", "x", "p")],
        {"x": (2, 3, 1)},
        lambda x, p: x**p,
        {"p": np.array([[1.0, 2.0, 0.0, 3.0]], np.float32)},
        opset=13,
        positive=True,
    ),
    Case(
        "PRelu",
        [node("PRelu", "x", "slope")],
        {"x": (2, 3, 4, 5)},
        lambda x, slope: F.prelu(x, slope.flatten()),
        {"slope": rand(3, 1, 1)},
        kinks=(0.0,),
    ),
]


UNARY_CASES = [
    unary("", "Relu", F.relu, kinks=(0.0,)),
    unary("opset9", "Relu", F.relu, opset=9, kinks=(0.0,)),
    unary("a0.1", "LeakyRelu", lambda x: F.leaky_relu(x, 0.1), alpha=0.1, kinks=(0.0,)),
    unary("a-0.5", "LeakyRelu", lambda x: F.leaky_relu(x, -0.5), alpha=-0.5, kinks=(0.0,)),
    unary("", "Sigmoid", torch.sigmoid),
    unary("", "Tanh", torch.tanh),
    unary("default", "HardSigmoid", hardsigmoid(0.2, 0.5), kinks=(-2.5, 2.5)),
    unary("torch", "HardSigmoid", F.hardsigmoid, alpha=1 / 6, beta=0.5, kinks=(-3.0, 3.0)),
    unary("", "HardSwish", F.hardswish, opset=14, kinks=(-3.0, 3.0)),
    unary("", "Exp", torch.exp),
    unary("", "Log", torch.log, positive=True),
    unary("", "Sqrt", torch.sqrt, positive=True),
    unary("", "Reciprocal", torch.reciprocal, positive=True),
    unary("", "Neg", torch.neg),
    unary("", "Abs", torch.abs, kinks=(0.0,)),
    unary("", "Erf", torch.erf),
    unary("none", "Gelu", F.gelu, opset=20),
    unary("tanh", "Gelu", lambda x: F.gelu(x, approximate="tanh"), opset=20, approximate="tanh"),
    unary("", "Softplus", F.softplus),
    unary("a0.7", "Elu", lambda x: F.elu(x, 0.7), alpha=0.7, kinks=(0.0,)),
    unary("", "Mish", F.mish, opset=18),
    unary("opset9-attrs", "Clip", lambda x: F.hardtanh(x, -0.5, 0.7), opset=9, min=-0.5, max=0.7, kinks=(-0.5, 0.7)),
    unary(
        "opset11-inputs",
        "Clip",
        lambda x, lo, hi: F.hardtanh(x, -0.5, 0.7),
        opset=11,
        inputs=("lo", "hi"),
        weights={"lo": f32(-0.5), "hi": f32(0.7)},
        kinks=(-0.5, 0.7),
    ),
    unary(
        "min-only",
        "Clip",
        lambda x, lo: torch.clamp(x, min=-0.3),
        opset=13,
        inputs=("lo",),
        weights={"lo": f32(-0.3)},
        kinks=(-0.3,),
    ),
    unary(
        "max-only",
        "Clip",
        lambda x, hi: torch.clamp(x, max=0.4),
        opset=13,
        inputs=("", "hi"),
        weights={"hi": f32(0.4)},
        kinks=(0.4,),
    ),
    unary(
        "relu6",
        "Clip",
        lambda x, **_: F.relu6(x),
        opset=13,
        inputs=("lo", "hi"),
        weights={"lo": f32(0.0), "hi": f32(6.0)},
        kinks=(0.0,),
        shape=(2, 3, 4, 5),
    ),
    unary("no-bounds", "Clip", lambda x: x, opset=13),
    unary("to-double", "Cast", lambda x: x, to=TensorProto.DOUBLE),
    unary("", "Identity", lambda x: x),
    unary("opset9", "Dropout", lambda x: x, opset=9, ratio=0.3),
    unary("opset13-ratio", "Dropout", lambda x, r: x, opset=13, inputs=("r",), weights={"r": f32(0.3)}),
]


def test_clip_mask_leaves_the_pre_activation_to_the_conv() -> None:
    """The Clip mask reads Y, so X feeds only Clip and onnxruntime can fuse Conv+Clip."""
    nodes = [node("Conv", "x", "W", out=["c"], pads=[1, 1, 1, 1]), node("Clip", "c", "lo", "hi", out=["y"])]
    model = make_model(nodes, {"x": (1, 4, 6, 6)}, 13, {"W": rand(4, 4, 3, 3), "lo": f32(0.0), "hi": f32(6.0)})
    backward = build_backward(model, ["y"])
    assert [n.op_type for n in backward.graph.node if "c" in n.input] == ["Clip"]


TIE_CASES = [
    (unary("zeros", "Relu", F.relu), lambda rng, s: np.round(rng.standard_normal(s))),
    (
        unary(
            "bounds",
            "Clip",
            lambda x, lo, hi: F.hardtanh(x, -1.0, 1.0),
            opset=13,
            inputs=("lo", "hi"),
            weights={"lo": f32(-1), "hi": f32(1)},
        ),
        lambda rng, s: np.round(rng.standard_normal(s) * 1.5),
    ),
    (unary("relu6-bounds", "Clip", F.relu6, opset=9, min=0.0, max=6.0), lambda rng, s: rng.integers(-1, 8, s).astype(float)),
    (unary("zero", "LeakyRelu", lambda x: F.leaky_relu(x, 0.2), alpha=0.2), lambda rng, s: np.round(rng.standard_normal(s))),
    (unary("zero", "Abs", torch.abs), lambda rng, s: np.round(rng.standard_normal(s))),
    (unary("kinks", "HardSwish", F.hardswish, opset=14), lambda rng, s: rng.integers(-4, 5, s).astype(float)),
    (unary("kinks", "HardSigmoid", F.hardsigmoid, alpha=1 / 6, beta=0.5), lambda rng, s: rng.integers(-4, 5, s).astype(float)),
    (
        Case("Max-ties", [node("Max", "a", "b")], {"a": (2, 3, 4), "b": (2, 3, 4)}, torch.maximum),
        lambda rng, s: np.round(rng.standard_normal(s)),
    ),
    (
        Case("Min-ties-broadcast", [node("Min", "a", "b")], {"a": (2, 3, 4), "b": (4,)}, torch.minimum),
        lambda rng, s: np.round(rng.standard_normal(s)),
    ),
]


@pytest.mark.parametrize(("case", "values"), TIE_CASES, ids=[c.id for c, _ in TIE_CASES])
def test_ties_follow_torch(case: Case, values: Callable[[np.random.Generator, Shape], np.ndarray]) -> None:
    check_ties(case, values)


# -- rectifiers --------------------------------------------------------------------------

RECTIFIER_MODEL_NODES = [
    node("Conv", "x", "W1", out=["c1"], pads=[1, 1, 1, 1]),
    node("Relu", "c1", out=["r1"]),
    node("Conv", "r1", "W2", out=["c2"], pads=[1, 1, 1, 1]),
    node("Clip", "c2", "zero", "six", out=["r2"]),
    node("Conv", "r2", "W3", out=["y"]),
]
RECTIFIER_WEIGHTS = {
    "W1": rand(4, 3, 3, 3) * 2,
    "W2": rand(4, 4, 3, 3),
    "W3": rand(2, 4, 1, 1),
    "zero": f32(0.0),
    "six": f32(1.0),
}


class _Rectified(torch.autograd.Function):
    """relu-like unit with a chosen backward: plain, guided or deconvnet."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, hi: float, rule: str) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.hi, ctx.rule = hi, rule
        return x.clamp(0.0, hi)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        inside = (x > 0) & (x < ctx.hi)
        if ctx.rule == "deconvnet":
            return g.clamp(min=0), None, None
        if ctx.rule == "guided":
            g = g.clamp(min=0)
        return g * inside, None, None


@pytest.mark.parametrize("rectifier", ["plain", "guided", "deconvnet"])
@pytest.mark.parametrize("scope", ["all", "relu"])
def test_rectifiers(rectifier: str, scope: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = {k: torch.tensor(v, dtype=torch.float64) for k, v in RECTIFIER_WEIGHTS.items()}
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    clip_rule = rectifier if scope == "all" else "plain"
    h = _Rectified.apply(F.conv2d(xt, w["W1"], padding=1), math.inf, rectifier)
    h = _Rectified.apply(F.conv2d(h, w["W2"], padding=1), 1.0, clip_rule)
    y = F.conv2d(h, w["W3"])
    dy = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    (ref,) = torch.autograd.grad(y, xt, torch.tensor(dy, dtype=torch.float64))
    model = make_model(RECTIFIER_MODEL_NODES, {"x": x.shape}, 13, RECTIFIER_WEIGHTS)
    out = run_backward(model, {"x": x}, {"y": dy}, rectifier=rectifier, rectifiers=scope)
    assert_close(out[grad_output_name("x")], ref.numpy(), f"{rectifier}/{scope}")


@pytest.mark.filterwarnings("ignore:Setting backward hooks:UserWarning")
def test_guided_relu_matches_captum() -> None:
    captum_attr = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3, padding=1),
        torch.nn.ReLU6(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 25, 3),
    ).double()
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    params = {f"p{i}": p.detach().numpy().astype(np.float32) for i, p in enumerate(net.parameters())}
    nodes = [
        node("Conv", "x", "p0", "p1", out=["a"], pads=[1, 1, 1, 1]),
        node("Relu", "a", out=["b"]),
        node("Conv", "b", "p2", "p3", out=["c"], pads=[1, 1, 1, 1]),
        node("Clip", "c", "lo", "hi", out=["d"]),
        node("Flatten", "d", out=["e"]),
        node("Gemm", "e", "p4", "p5", out=["y"], transB=1),
    ]
    model = make_model(nodes, {"x": x.shape}, 13, params | {"lo": f32(0), "hi": f32(6)})
    for method, rectifier in ((captum_attr.GuidedBackprop, "guided"), (captum_attr.Deconvolution, "deconvnet")):
        inputs = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        ref = method(net).attribute(inputs, target=1).detach().numpy()
        dy = np.zeros((2, 3), np.float32)
        dy[:, 1] = 1
        out = run_backward(model, {"x": x}, {"y": dy}, rectifier=rectifier, rectifiers="relu")
        assert_close(out[grad_output_name("x")], ref, rectifier)


@pytest.mark.parametrize("case", MATMUL_CASES + BINARY_CASES + VARIADIC_CASES + UNARY_CASES, ids=repr)
def test_op_matches_torch(case: Case) -> None:
    check(case)
