"""graph/backward/rules/linear.py against torch.autograd: Conv, ConvTranspose, Gemm and the
normalizations (per-op oracle cases, atol = 1e-5·max|ref| + 1e-6; see ``harness.py``), and the
form of the Conv gradient (no run-time shape arithmetic where sizes are static)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from convscope.graph.backward import build_backward, grad_output_name
from tests.graph.backward.harness import (
    BN_WEIGHTS,
    Case,
    Shape,
    assert_close,
    check,
    make_model,
    node,
    rand,
    run_backward,
    same_pads,
    torch_pads,
    unary,
)

# -- Conv / ConvTranspose ----------------------------------------------------------

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def conv_case(id: str, x: Shape, w: Shape, opset: int = 17, bias: bool = False, dynamic: bool = False, **attrs: Any) -> Case:
    n = len(w) - 2
    strides, dilations = attrs.get("strides", [1] * n), attrs.get("dilations", [1] * n)
    group, auto_pad = attrs.get("group", 1), attrs.get("auto_pad", "NOTSET")
    weights = {"W": rand(*w)} | ({"B": rand(w[0], seed=2)} if bias else {})

    def ref(x: torch.Tensor, W: torch.Tensor, B: torch.Tensor | None = None) -> torch.Tensor:
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            begin, end = same_pads(x.shape[2:], w[2:], strides, dilations, auto_pad == "SAME_UPPER")
        else:
            pads = attrs.get("pads", [0] * 2 * n) if auto_pad == "NOTSET" else [0] * 2 * n
            begin, end = pads[:n], pads[n:]
        return CONV[n](F.pad(x, torch_pads(begin, end)), W, B, stride=strides, dilation=dilations, groups=group)

    return Case(
        f"Conv-{id}{'-dynamic' if dynamic else ''}",
        [node("Conv", "x", *weights, **attrs)],
        {"x": x},
        ref,
        weights,
        opset,
        dynamic_spatial=dynamic,
    )


def conv_transpose_case(id: str, x: Shape, w: Shape, dynamic: bool = False, **attrs: Any) -> Case:
    n = len(w) - 2
    strides, dilations = attrs.get("strides", [1] * n), attrs.get("dilations", [1] * n)
    group = attrs.get("group", 1)
    extra = attrs.get("output_padding", [0] * n)
    weights = {"W": rand(*w)}

    def ref(x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        full = CONV_T[n](x, W, stride=strides, dilation=dilations, groups=group)
        full = F.pad(full, torch_pads([0] * n, extra))  # output_padding rows receive nothing
        if "output_shape" in attrs or attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            out = attrs.get("output_shape") or [s * d for s, d in zip(x.shape[2:], strides, strict=True)]
            totals = [max(f - o, 0) for f, o in zip(full.shape[2:], out, strict=True)]
            begin = [t // 2 if attrs.get("auto_pad") == "SAME_UPPER" else t - t // 2 for t in totals]
        else:
            pads = attrs.get("pads", [0] * 2 * n)
            begin = pads[:n]
            out = [f - b - e for f, b, e in zip(full.shape[2:], pads[:n], pads[n:], strict=True)]
        for axis, (b, o) in enumerate(zip(begin, out, strict=True), start=2):
            full = full.narrow(axis, b, o)
        return full

    return Case(
        f"ConvTranspose-{id}{'-dynamic' if dynamic else ''}",
        [node("ConvTranspose", "x", "W", **attrs)],
        {"x": x},
        ref,
        weights,
        dynamic_spatial=dynamic,
    )


CONV_CASES = [
    conv_case("k3p1", (2, 4, 9, 8), (6, 4, 3, 3), pads=[1, 1, 1, 1]),
    conv_case("s2-asym-pads", (2, 4, 9, 8), (5, 4, 3, 2), strides=[2, 2], pads=[0, 1, 2, 1]),
    conv_case("s3-remainder", (2, 4, 11, 10), (5, 4, 3, 3), strides=[3, 3]),
    conv_case("dilation2-s2", (2, 4, 12, 11), (3, 4, 3, 3), strides=[2, 2], dilations=[2, 2], pads=[2, 2, 2, 2]),
    conv_case("groups2", (2, 4, 8, 8), (6, 2, 3, 3), group=2, pads=[1, 0, 1, 0]),
    conv_case("depthwise-s2", (2, 4, 9, 9), (4, 1, 3, 3), group=4, strides=[2, 2], pads=[1, 1, 1, 1]),
    conv_case("depthwise-mult2", (1, 3, 7, 7), (6, 1, 3, 3), group=3),
    conv_case("same-upper-s2", (2, 4, 9, 8), (3, 4, 3, 3), strides=[2, 2], auto_pad="SAME_UPPER"),
    conv_case("same-lower-s2-k4", (2, 4, 9, 8), (3, 4, 4, 4), strides=[2, 2], auto_pad="SAME_LOWER"),
    conv_case("same-upper-k3x2", (2, 3, 10, 9), (3, 3, 3, 2), auto_pad="SAME_UPPER"),
    conv_case("valid-s3", (2, 4, 11, 10), (3, 4, 3, 3), strides=[3, 3], auto_pad="VALID"),
    conv_case("pointwise-s2-bias", (2, 4, 9, 8), (5, 4, 1, 1), strides=[2, 2], bias=True),
    conv_case("1d", (2, 3, 17), (4, 3, 5), strides=[2], pads=[1, 2]),
    conv_case("3d", (1, 2, 5, 6, 5), (3, 2, 3, 3, 3), strides=[1, 2, 1], pads=[1, 1, 1, 1, 0, 1]),
    conv_case("opset9", (2, 4, 9, 8), (6, 4, 3, 3), opset=9, strides=[2, 2], pads=[1, 1, 1, 1]),
    conv_case("opset11-same", (2, 4, 9, 8), (6, 4, 3, 3), opset=11, strides=[2, 2], auto_pad="SAME_UPPER"),
    # The static specializations (see rules/linear.py), each also with spatial sizes known
    # only at run time: stride 1 keeps its flipped Conv, strided ones take the general path.
    *(
        conv_case(id, x, w, dynamic=dynamic, **attrs)
        for dynamic in (False, True)
        for id, x, w, attrs in [
            ("s1-asym-pads", (2, 4, 9, 8), (5, 4, 3, 3), {"pads": [0, 2, 1, 0]}),
            ("s1-pads-beyond-kernel", (2, 4, 6, 7), (3, 4, 3, 2), {"pads": [3, 0, 1, 2]}),
            ("s1-k1-padded", (2, 4, 5, 6), (3, 4, 1, 1), {"pads": [1, 2, 0, 1]}),
            ("s1-dilated-asym", (2, 3, 11, 10), (4, 3, 3, 3), {"dilations": [2, 3], "pads": [1, 3, 2, 0]}),
            ("s1-groups3", (2, 6, 7, 8), (9, 2, 3, 3), {"group": 3, "pads": [1, 1, 1, 1]}),
            ("s1-depthwise-k5", (2, 5, 9, 8), (5, 1, 5, 5), {"group": 5, "pads": [2, 2, 2, 2]}),
            ("s1-same-lower-k4x3", (2, 3, 9, 8), (4, 3, 4, 3), {"auto_pad": "SAME_LOWER"}),
            ("s2-groups2", (2, 4, 9, 8), (6, 2, 3, 3), {"group": 2, "strides": [2, 2], "pads": [1, 0, 0, 1]}),
            ("s2-depthwise-k5-asym", (2, 6, 12, 11), (6, 1, 5, 5), {"group": 6, "strides": [2, 2], "pads": [1, 1, 2, 2]}),
            ("s3-depthwise-remainder", (2, 4, 11, 13), (4, 1, 3, 3), {"group": 4, "strides": [3, 3]}),
            (
                "s2-depthwise-dilated",
                (2, 4, 13, 12),
                (4, 1, 3, 3),
                {"group": 4, "strides": [2, 2], "dilations": [2, 2], "pads": [2, 1, 2, 2]},
            ),
            ("s2x1-depthwise", (2, 4, 9, 8), (4, 1, 3, 3), {"group": 4, "strides": [2, 1], "pads": [1, 1, 1, 1]}),
            (
                "s2-depthwise-pads-beyond-kernel",
                (2, 3, 8, 9),
                (3, 1, 1, 3),
                {"group": 3, "strides": [2, 2], "pads": [1, 2, 2, 3]},
            ),
            ("s2-depthwise-same-upper", (2, 4, 10, 9), (4, 1, 3, 3), {"group": 4, "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
            ("s2-depthwise-mult2", (2, 3, 9, 9), (6, 1, 3, 3), {"group": 3, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
            ("1d-s2-depthwise", (2, 3, 17), (3, 1, 5), {"group": 3, "strides": [2], "pads": [2, 1]}),
            ("3d-s2-depthwise", (1, 2, 6, 7, 5), (2, 1, 3, 3, 3), {"group": 2, "strides": [2, 2, 1], "pads": [1, 1, 1, 1, 0, 1]}),
        ]
    ),
    conv_case("s2-asym-pads", (2, 4, 9, 8), (5, 4, 3, 2), dynamic=True, strides=[2, 2], pads=[0, 1, 2, 1]),
    conv_case("same-upper-s2", (2, 4, 9, 8), (3, 4, 3, 3), dynamic=True, strides=[2, 2], auto_pad="SAME_UPPER"),
    conv_case("same-upper-k3x2", (2, 3, 10, 9), (3, 3, 3, 2), dynamic=True, auto_pad="SAME_UPPER"),
    conv_case("valid-s3", (2, 4, 11, 10), (3, 4, 3, 3), dynamic=True, strides=[3, 3], auto_pad="VALID"),
    conv_case("k3p1", (2, 4, 9, 8), (6, 4, 3, 3), dynamic=True, pads=[1, 1, 1, 1]),
    conv_transpose_case("s2p1op1", (2, 4, 5, 6), (4, 3, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]),
    conv_transpose_case("s2-k4", (2, 4, 5, 6), (4, 3, 4, 4), strides=[2, 2]),
    conv_transpose_case(
        "d2-s2-op", (2, 4, 5, 6), (4, 3, 3, 3), strides=[2, 2], dilations=[2, 2], pads=[2, 1, 2, 1], output_padding=[1, 0]
    ),
    conv_transpose_case("groups2", (2, 4, 5, 6), (4, 2, 3, 3), strides=[2, 2], group=2, pads=[1, 1, 1, 1]),
    conv_transpose_case("asym-pads", (2, 4, 5, 6), (4, 3, 3, 3), strides=[2, 2], pads=[0, 1, 2, 0]),
    conv_transpose_case("output-shape", (2, 4, 5, 6), (4, 3, 3, 3), strides=[2, 2], output_shape=[10, 9]),
    conv_transpose_case("same-upper", (2, 4, 5, 6), (4, 3, 3, 3), strides=[2, 2], auto_pad="SAME_UPPER"),
    conv_transpose_case("1d", (2, 3, 7), (3, 2, 5), strides=[3], pads=[2, 1]),
    conv_transpose_case("valid-s2-op1", (2, 4, 5, 6), (4, 3, 3, 3), strides=[2, 2], auto_pad="VALID", output_padding=[1, 0]),
    conv_transpose_case(
        "s2p1op1", (2, 4, 5, 6), (4, 3, 3, 3), dynamic=True, strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]
    ),
    conv_transpose_case("output-shape", (2, 4, 5, 6), (4, 3, 3, 3), dynamic=True, strides=[2, 2], output_shape=[10, 9]),
]


def computed_weight_case(id: str, x: Shape, w: Shape, dynamic: bool = False, **attrs: Any) -> Case:
    """A Conv whose weight is computed at run time (as after DequantizeLinear): no flipped copy."""
    n = len(w) - 2
    weights = {"W": rand(*w), "scale": np.float32(0.5)}

    def ref(x: torch.Tensor, W: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        pads = attrs.get("pads", [0] * 2 * n)
        return CONV[n](
            F.pad(x, torch_pads(pads[:n], pads[n:])),
            W * scale,
            stride=attrs.get("strides", 1),
            dilation=attrs.get("dilations", 1),
            groups=attrs.get("group", 1),
        )

    nodes = [node("Mul", "W", "scale", out=["Ws"]), node("Conv", "x", "Ws", **attrs)]
    return Case(
        f"Conv-computed-weight-{id}{'-dynamic' if dynamic else ''}", nodes, {"x": x}, ref, weights, dynamic_spatial=dynamic
    )


CONV_CASES += [
    computed_weight_case("s1", (2, 4, 7, 8), (5, 4, 3, 3), pads=[1, 0, 2, 1]),
    computed_weight_case("s1", (2, 4, 7, 8), (5, 4, 3, 3), dynamic=True, pads=[1, 0, 2, 1]),
    computed_weight_case("s2-depthwise", (2, 4, 9, 8), (4, 1, 3, 3), group=4, strides=[2, 2], pads=[1, 1, 1, 1]),
]


# -- Gemm / MatMul -------------------------------------------------------------------


def gemm_case(ta: int, tb: int, alpha: float, beta: float, c: Shape | None) -> Case:
    m, k, n = 3, 4, 5
    weights = {} if c is None else {"C": rand(*c, seed=3)}

    def ref(a: torch.Tensor, b: torch.Tensor, C: torch.Tensor | None = None) -> torch.Tensor:
        y = alpha * (a.T if ta else a) @ (b.T if tb else b)
        return y if C is None else y + beta * C

    attrs = dict(transA=ta, transB=tb, alpha=alpha, beta=beta)
    return Case(
        f"Gemm-tA{ta}-tB{tb}-a{alpha}-b{beta}-C{c}",
        [node("Gemm", "a", "b", *weights, **attrs)],
        {"a": (k, m) if ta else (m, k), "b": (n, k) if tb else (k, n)},
        ref,
        weights,
    )


GEMM_CASES = [gemm_case(ta, tb, 1.0, 1.0, (5,)) for ta in (0, 1) for tb in (0, 1)] + [
    gemm_case(0, 1, 0.5, 2.0, (1, 5)),
    gemm_case(1, 0, 1.5, 0.5, (3, 5)),
    gemm_case(0, 0, 2.0, 0.0, ()),
    gemm_case(1, 1, -1.0, 1.0, None),
    gemm_case(0, 0, 1.0, 3.0, (3, 1)),
]


NORM_CASES = [
    unary(
        f"opset{o}",
        "BatchNormalization",
        lambda x, scale, bias, mean, var: F.batch_norm(x, mean, var, scale, bias, False, 0.0, 1e-3),
        opset=o,
        inputs=tuple(BN_WEIGHTS),
        weights=BN_WEIGHTS,
        epsilon=1e-3,
    )
    for o in (9, 15)
] + [
    unary(
        "axis-1",
        "LayerNormalization",
        lambda x, s, b: F.layer_norm(x, (5,), s, b, 1e-5),
        inputs=("s", "b"),
        weights={"s": rand(5), "b": rand(5, seed=2)},
    ),
    unary(
        "axis1",
        "LayerNormalization",
        lambda x, s: F.layer_norm(x, (3, 4, 5), s, None, 1e-3),
        inputs=("s",),
        weights={"s": rand(3, 4, 5)},
        axis=1,
        epsilon=1e-3,
    ),
    unary(
        "",
        "InstanceNormalization",
        lambda x, s, b: F.instance_norm(x, weight=s, bias=b, eps=1e-5),
        inputs=("s", "b"),
        weights={"s": rand(3), "b": rand(3, seed=2)},
    ),
]


# -- the form of the Conv gradient -------------------------------------------------------


def backward_ops(model: onnx.ModelProto, **kwargs: Any) -> list[str]:
    """Op types of the nodes ``build_backward`` added, constants and the output Identity aside."""
    backward = build_backward(model, ["y"], **kwargs)
    return sorted(
        n.op_type for n in backward.graph.node if n.name.startswith("bwd/") and n.op_type not in ("Constant", "Identity")
    )


RUN_TIME_SHAPES = {"Shape", "Gather", "Concat", "Max", "Neg", "Sub", "Add", "Pad", "ConstantOfShape"}


@pytest.mark.parametrize(
    ("x", "w", "attrs", "dynamic", "ops"),
    [
        ((1, 8, 9, 9), (8, 8, 3, 3), {"pads": [1, 1, 1, 1]}, False, ["Conv"]),
        ((1, 8, 9, 9), (8, 8, 3, 3), {"pads": [1, 1, 1, 1]}, True, ["Conv"]),
        ((1, 8, 9, 9), (8, 1, 5, 5), {"pads": [2, 2, 2, 2], "group": 8}, True, ["Conv"]),
        ((1, 8, 9, 9), (8, 8, 1, 1), {"pads": [1, 0, 0, 0]}, False, ["Conv", "Slice"]),
        ((1, 8, 9, 9), (8, 8, 3, 3), {"auto_pad": "SAME_UPPER"}, True, ["Conv"]),
        ((1, 8, 9, 9), (16, 8, 3, 3), {"pads": [0, 0, 1, 1], "strides": [2, 2]}, False, ["ConvTranspose"]),
        ((1, 8, 9, 9), (8, 1, 3, 3), {"pads": [0, 0, 1, 1], "strides": [2, 2], "group": 8}, False, ["Conv", "Mul", "Resize"]),
    ],
    ids=["s1", "s1-dynamic", "depthwise-s1-dynamic", "pads-beyond-kernel", "same-s1-dynamic", "s2", "depthwise-s2"],
)
def test_static_conv_gradient_has_no_run_time_shape_arithmetic(
    x: Shape, w: Shape, attrs: dict[str, Any], dynamic: bool, ops: list[str]
) -> None:
    model = make_model([node("Conv", "x", "W", **attrs)], {"x": x}, 17, {"W": rand(*w)}, dynamic_spatial=dynamic)
    assert backward_ops(model) == ops


def test_strided_conv_with_run_time_sizes_takes_the_general_path() -> None:
    attrs = {"pads": [0, 0, 1, 1], "strides": [2, 2], "group": 8}
    model = make_model([node("Conv", "x", "W", **attrs)], {"x": (1, 8, 9, 9)}, 17, {"W": rand(8, 1, 3, 3)}, dynamic_spatial=True)
    ops = backward_ops(model)
    assert "ConvTranspose" in ops and RUN_TIME_SHAPES & set(ops)


def test_flipped_kernels_are_initializers_made_once_per_weight() -> None:
    """Two Convs sharing one weight: one flipped copy, stored as an initializer, not a Constant."""
    nodes = [
        node("Conv", "x", "W", out=["a"], pads=[1, 1, 1, 1]),
        node("Relu", "a", out=["r"]),
        node("Conv", "r", "W", out=["y"], pads=[1, 1, 1, 1]),
    ]
    model = make_model(nodes, {"x": (1, 4, 6, 6)}, 17, {"W": rand(4, 4, 3, 3)})
    backward = build_backward(model, ["y"])
    added = [t for t in backward.graph.initializer if t.name.startswith("bwd/")]
    assert len(added) == 1 and tuple(added[0].dims) == (4, 4, 3, 3)
    assert all(math.prod(n.attribute[0].t.dims) <= 4 for n in backward.graph.node if n.op_type == "Constant")
    np.testing.assert_array_equal(numpy_helper.to_array(added[0]), np.flip(rand(4, 4, 3, 3).swapaxes(0, 1), axis=(2, 3)))


def test_zero_lattice_is_an_initializer_shared_by_equal_layers() -> None:
    attrs = {"pads": [0, 0, 1, 1], "strides": [2, 2], "group": 4}
    nodes = [node("Conv", "x", "W1", out=["a"], **attrs), node("Conv", "x", "W2", out=["b"], **attrs), node("Add", "a", "b")]
    model = make_model(nodes, {"x": (1, 4, 8, 8)}, 17, {"W1": rand(4, 1, 3, 3), "W2": rand(4, 1, 3, 3, seed=2)})
    backward = build_backward(model, ["y"])
    added = sorted(tuple(t.dims) for t in backward.graph.initializer if t.name.startswith("bwd/"))
    assert added == [(1, 1, 8, 8), (4, 1, 3, 3), (4, 1, 3, 3)]
    assert all(math.prod(n.attribute[0].t.dims) <= 4 for n in backward.graph.node if n.op_type == "Constant")


@pytest.mark.parametrize("group", [1, 4])
def test_stale_size_annotations_are_not_trusted(group: int) -> None:
    """A model whose input was made dynamic but whose value_info still says 8×8."""
    attrs = {"strides": [2, 2], "pads": [1, 1, 1, 1], "group": group}
    nodes = [node("Conv", "x", "W1", out=["a"], pads=[1, 1, 1, 1]), node("Conv", "a", "W2", **attrs)]
    weights = {"W1": rand(4, 4, 3, 3), "W2": rand(4, 4 // group, 3, 3, seed=2)}
    model = make_model(nodes, {"x": (2, 4, 8, 8)}, 17, weights, dynamic_spatial=True)
    model.graph.value_info.append(helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N0", 4, 8, 8]))
    x, dy = rand(2, 4, 11, 10, seed=3), rand(2, 4, 6, 5, seed=4)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    w = {k: torch.tensor(v, dtype=torch.float64) for k, v in weights.items()}
    y = F.conv2d(F.conv2d(xt, w["W1"], padding=1), w["W2"], stride=2, padding=1, groups=group)
    (ref,) = torch.autograd.grad(y, xt, torch.tensor(dy, dtype=torch.float64))
    out = run_backward(model, {"x": x}, {"y": dy})
    assert_close(out[grad_output_name("x")], ref.numpy())


@pytest.mark.parametrize("case", CONV_CASES + GEMM_CASES + NORM_CASES, ids=repr)
def test_op_matches_torch(case: Case) -> None:
    check(case)
