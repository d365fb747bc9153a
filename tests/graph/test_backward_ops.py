"""Per-op oracle tests of the backward graph pass against ``torch.autograd``.

Each case is a one-op (or few-op) ONNX model built inline and an equivalent torch
expression.  The backward model runs on plain onnxruntime CPU; its input gradient
for a random seed ``dY`` must match ``torch.autograd.grad(y, x, dY)`` (computed in
float64) to ``atol = 1e-5·max|ref| + 1e-6``.  Inputs are kept away from kinks except
in the tie tests, which pin torch's conventions exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

from convscope.errors import InvalidArgument, UnsupportedOp
from convscope.graph.backward import build_backward, grad_output_name, seed_input_name

CPU = ["CPUExecutionProvider"]
INT_MAX = 2**63 - 1

Shape = tuple[int, ...]


# -- harness -----------------------------------------------------------------------


def make_model(nodes: Sequence[onnx.NodeProto], inputs: dict[str, Shape], opset: int,
               weights: dict[str, np.ndarray] | None = None, outputs: Sequence[str] = ("y",),
               symbolic: bool = True, input_type: int = TensorProto.FLOAT,
               dynamic_spatial: bool = False) -> onnx.ModelProto:
    """A model over float inputs; with ``symbolic`` each input's first dim is its own symbol,
    with ``dynamic_spatial`` so is every dim after the second (sizes known at run time only)."""

    def dims(k: int, shape: Shape) -> list[int | str]:
        out: list[int | str] = list(shape)
        if symbolic and shape:
            out[0] = f"N{k}"
        if dynamic_spatial:
            out[2:] = [f"S{k}_{i}" for i in range(2, len(shape))]
        return out

    value_infos = [helper.make_tensor_value_info(name, input_type, dims(k, shape))
                   for k, (name, shape) in enumerate(inputs.items())]
    graph = helper.make_graph(
        list(nodes), "case", value_infos,
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (weights or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    return model


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    onnx.checker.check_model(model)
    assert model.ir_version <= 13
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    return ort.InferenceSession(model.SerializeToString(), providers=CPU)


def run_backward(model: onnx.ModelProto, feeds: dict[str, np.ndarray], seeds: dict[str, np.ndarray],
                 **kwargs: Any) -> dict[str, np.ndarray]:
    before = model.SerializeToString()
    backward = build_backward(model, list(seeds), **kwargs)
    assert model.SerializeToString() == before, "build_backward mutated its argument"
    sess = session(backward)
    types = {i.name: i.type for i in sess.get_inputs()}
    feed = dict(feeds)
    for name, value in seeds.items():
        feed[seed_input_name(name)] = value.astype(np.float64 if "double" in types[seed_input_name(name)]
                                                   else np.float32)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feed), strict=True))


def assert_close(ours: np.ndarray, ref: np.ndarray, what: str = "") -> None:
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    atol = 1e-5 * float(np.abs(ref).max(initial=0.0)) + 1e-6
    np.testing.assert_allclose(ours, ref, rtol=0, atol=atol, err_msg=what)


def torch_grads(ref: Callable[..., torch.Tensor], inputs: dict[str, np.ndarray],
                weights: dict[str, np.ndarray], dy: Callable[[Shape], np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    xs = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in inputs.items()}
    ws = {k: torch.tensor(np.asarray(v), dtype=torch.float64 if np.asarray(v).dtype.kind == "f" else None)
          for k, v in weights.items()}
    y = ref(*xs.values(), **ws)
    seed = dy(tuple(y.shape))
    grads = torch.autograd.grad(y, list(xs.values()), torch.tensor(seed, dtype=torch.float64),
                                allow_unused=True)
    return y.detach().numpy(), seed, {
        k: (np.zeros_like(inputs[k]) if g is None else g.numpy()) for k, g in zip(xs, grads, strict=True)}


@dataclass
class Case:
    id: str
    nodes: list[onnx.NodeProto]
    inputs: dict[str, Shape]
    ref: Callable[..., torch.Tensor]
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    opset: int = 17
    kinks: tuple[float, ...] = ()
    positive: bool = False
    symbolic: bool = True
    dynamic_spatial: bool = False

    def __repr__(self) -> str:
        return self.id


def sample(rng: np.random.Generator, shape: Shape, case: Case) -> np.ndarray:
    x = rng.standard_normal(shape)
    if case.positive:
        x = np.abs(x) + 0.5
    for kink in case.kinks:  # push values off kinks so float32 and float64 agree on the side
        near = np.abs(x - kink) < 0.05
        x[near] += np.where(x[near] >= kink, 0.1, -0.1)
    return np.asarray(x, dtype=np.float32)


def check(case: Case, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    inputs = {k: sample(rng, s, case) for k, s in case.inputs.items()}
    y_ref, dy, ref = torch_grads(case.ref, inputs, case.weights,
                                 lambda s: rng.standard_normal(s).astype(np.float32))
    model = make_model(case.nodes, case.inputs, case.opset, case.weights, symbolic=case.symbolic,
                       dynamic_spatial=case.dynamic_spatial)
    out = run_backward(model, inputs, {"y": dy}, keep=["y"])
    assert_close(out["y"].astype(np.float64), y_ref, f"{case.id}: forward")
    for name in case.inputs:
        assert_close(out[grad_output_name(name)], ref[name], f"{case.id}: d{name}")


def rand(*shape: int, seed: int = 1, positive: bool = False) -> np.ndarray:
    x = np.random.default_rng(seed + sum(shape)).standard_normal(shape).astype(np.float32)
    return np.abs(x) + 0.5 if positive else x


def node(op: str, *inputs: str, out: Sequence[str] = ("y",), **attrs: Any) -> onnx.NodeProto:
    return helper.make_node(op, list(inputs), list(out), **attrs)


def const(name: str, value: Any, dtype: Any = np.int64) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name],
                            value=numpy_helper.from_array(np.asarray(value, dtype=dtype), name))


def torch_pads(begin: Sequence[int], end: Sequence[int]) -> list[int]:
    """ONNX [b0, b1, …, e0, e1, …] → F.pad's last-axis-first pairs."""
    return [p for b, e in zip(reversed(begin), reversed(end), strict=True) for p in (b, e)]


def same_pads(size: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
              dilations: Sequence[int], upper: bool) -> tuple[list[int], list[int]]:
    begin, end = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations, strict=True):
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        b = total // 2 if upper else total - total // 2
        begin.append(b)
        end.append(total - b)
    return begin, end


# -- Conv / ConvTranspose ----------------------------------------------------------

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def conv_case(id: str, x: Shape, w: Shape, opset: int = 17, bias: bool = False,
              dynamic: bool = False, **attrs: Any) -> Case:
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
        return CONV[n](F.pad(x, torch_pads(begin, end)), W, B, stride=strides, dilation=dilations,
                       groups=group)

    return Case(f"Conv-{id}{'-dynamic' if dynamic else ''}", [node("Conv", "x", *weights, **attrs)], {"x": x},
                ref, weights, opset, dynamic_spatial=dynamic)


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

    return Case(f"ConvTranspose-{id}{'-dynamic' if dynamic else ''}", [node("ConvTranspose", "x", "W", **attrs)],
                {"x": x}, ref, weights, dynamic_spatial=dynamic)


CONV_CASES = [
    conv_case("k3p1", (2, 4, 9, 8), (6, 4, 3, 3), pads=[1, 1, 1, 1]),
    conv_case("s2-asym-pads", (2, 4, 9, 8), (5, 4, 3, 2), strides=[2, 2], pads=[0, 1, 2, 1]),
    conv_case("s3-remainder", (2, 4, 11, 10), (5, 4, 3, 3), strides=[3, 3]),
    conv_case("dilation2-s2", (2, 4, 12, 11), (3, 4, 3, 3), strides=[2, 2], dilations=[2, 2],
              pads=[2, 2, 2, 2]),
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
    *(conv_case(id, x, w, dynamic=dynamic, **attrs) for dynamic in (False, True) for id, x, w, attrs in [
        ("s1-asym-pads", (2, 4, 9, 8), (5, 4, 3, 3), {"pads": [0, 2, 1, 0]}),
        ("s1-pads-beyond-kernel", (2, 4, 6, 7), (3, 4, 3, 2), {"pads": [3, 0, 1, 2]}),
        ("s1-k1-padded", (2, 4, 5, 6), (3, 4, 1, 1), {"pads": [1, 2, 0, 1]}),
        ("s1-dilated-asym", (2, 3, 11, 10), (4, 3, 3, 3), {"dilations": [2, 3], "pads": [1, 3, 2, 0]}),
        ("s1-groups3", (2, 6, 7, 8), (9, 2, 3, 3), {"group": 3, "pads": [1, 1, 1, 1]}),
        ("s1-depthwise-k5", (2, 5, 9, 8), (5, 1, 5, 5), {"group": 5, "pads": [2, 2, 2, 2]}),
        ("s1-same-lower-k4x3", (2, 3, 9, 8), (4, 3, 4, 3), {"auto_pad": "SAME_LOWER"}),
        ("s2-groups2", (2, 4, 9, 8), (6, 2, 3, 3), {"group": 2, "strides": [2, 2], "pads": [1, 0, 0, 1]}),
        ("s2-depthwise-k5-asym", (2, 6, 12, 11), (6, 1, 5, 5),
         {"group": 6, "strides": [2, 2], "pads": [1, 1, 2, 2]}),
        ("s3-depthwise-remainder", (2, 4, 11, 13), (4, 1, 3, 3), {"group": 4, "strides": [3, 3]}),
        ("s2-depthwise-dilated", (2, 4, 13, 12), (4, 1, 3, 3),
         {"group": 4, "strides": [2, 2], "dilations": [2, 2], "pads": [2, 1, 2, 2]}),
        ("s2x1-depthwise", (2, 4, 9, 8), (4, 1, 3, 3), {"group": 4, "strides": [2, 1], "pads": [1, 1, 1, 1]}),
        ("s2-depthwise-pads-beyond-kernel", (2, 3, 8, 9), (3, 1, 1, 3),
         {"group": 3, "strides": [2, 2], "pads": [1, 2, 2, 3]}),
        ("s2-depthwise-same-upper", (2, 4, 10, 9), (4, 1, 3, 3),
         {"group": 4, "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
        ("s2-depthwise-mult2", (2, 3, 9, 9), (6, 1, 3, 3), {"group": 3, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
        ("1d-s2-depthwise", (2, 3, 17), (3, 1, 5), {"group": 3, "strides": [2], "pads": [2, 1]}),
        ("3d-s2-depthwise", (1, 2, 6, 7, 5), (2, 1, 3, 3, 3),
         {"group": 2, "strides": [2, 2, 1], "pads": [1, 1, 1, 1, 0, 1]}),
    ]),
    conv_case("s2-asym-pads", (2, 4, 9, 8), (5, 4, 3, 2), dynamic=True, strides=[2, 2], pads=[0, 1, 2, 1]),
    conv_case("same-upper-s2", (2, 4, 9, 8), (3, 4, 3, 3), dynamic=True, strides=[2, 2], auto_pad="SAME_UPPER"),
    conv_case("same-upper-k3x2", (2, 3, 10, 9), (3, 3, 3, 2), dynamic=True, auto_pad="SAME_UPPER"),
    conv_case("valid-s3", (2, 4, 11, 10), (3, 4, 3, 3), dynamic=True, strides=[3, 3], auto_pad="VALID"),
    conv_case("k3p1", (2, 4, 9, 8), (6, 4, 3, 3), dynamic=True, pads=[1, 1, 1, 1]),
    conv_transpose_case("s2p1op1", (2, 4, 5, 6), (4, 3, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1],
                        output_padding=[1, 1]),
    conv_transpose_case("s2-k4", (2, 4, 5, 6), (4, 3, 4, 4), strides=[2, 2]),
    conv_transpose_case("d2-s2-op", (2, 4, 5, 6), (4, 3, 3, 3), strides=[2, 2], dilations=[2, 2],
                        pads=[2, 1, 2, 1], output_padding=[1, 0]),
    conv_transpose_case("groups2", (2, 4, 5, 6), (4, 2, 3, 3), strides=[2, 2], group=2,
                        pads=[1, 1, 1, 1]),
    conv_transpose_case("asym-pads", (2, 4, 5, 6), (4, 3, 3, 3), strides=[2, 2], pads=[0, 1, 2, 0]),
    conv_transpose_case("output-shape", (2, 4, 5, 6), (4, 3, 3, 3), strides=[2, 2],
                        output_shape=[10, 9]),
    conv_transpose_case("same-upper", (2, 4, 5, 6), (4, 3, 3, 3), strides=[2, 2], auto_pad="SAME_UPPER"),
    conv_transpose_case("1d", (2, 3, 7), (3, 2, 5), strides=[3], pads=[2, 1]),
    conv_transpose_case("valid-s2-op1", (2, 4, 5, 6), (4, 3, 3, 3), strides=[2, 2], auto_pad="VALID",
                        output_padding=[1, 0]),
    conv_transpose_case("s2p1op1", (2, 4, 5, 6), (4, 3, 3, 3), dynamic=True, strides=[2, 2], pads=[1, 1, 1, 1],
                        output_padding=[1, 1]),
    conv_transpose_case("output-shape", (2, 4, 5, 6), (4, 3, 3, 3), dynamic=True, strides=[2, 2],
                        output_shape=[10, 9]),
]


def computed_weight_case(id: str, x: Shape, w: Shape, dynamic: bool = False, **attrs: Any) -> Case:
    """A Conv whose weight is computed at run time (as after DequantizeLinear): no flipped copy."""
    n = len(w) - 2
    weights = {"W": rand(*w), "scale": np.float32(0.5)}

    def ref(x: torch.Tensor, W: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        pads = attrs.get("pads", [0] * 2 * n)
        return CONV[n](F.pad(x, torch_pads(pads[:n], pads[n:])), W * scale, stride=attrs.get("strides", 1),
                       dilation=attrs.get("dilations", 1), groups=attrs.get("group", 1))

    nodes = [node("Mul", "W", "scale", out=["Ws"]), node("Conv", "x", "Ws", **attrs)]
    return Case(f"Conv-computed-weight-{id}{'-dynamic' if dynamic else ''}", nodes, {"x": x}, ref, weights,
                dynamic_spatial=dynamic)


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
    return Case(f"Gemm-tA{ta}-tB{tb}-a{alpha}-b{beta}-C{c}", [node("Gemm", "a", "b", *weights, **attrs)],
                {"a": (k, m) if ta else (m, k), "b": (n, k) if tb else (k, n)}, ref, weights)


GEMM_CASES = [gemm_case(ta, tb, 1.0, 1.0, (5,)) for ta in (0, 1) for tb in (0, 1)] + [
    gemm_case(0, 1, 0.5, 2.0, (1, 5)), gemm_case(1, 0, 1.5, 0.5, (3, 5)),
    gemm_case(0, 0, 2.0, 0.0, ()), gemm_case(1, 1, -1.0, 1.0, None), gemm_case(0, 0, 1.0, 3.0, (3, 1)),
]

MATMUL_SHAPES = [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (4, 5)), ((2, 3, 4), (4,)),
                 ((4,), (4,)), ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (2, 4, 5))]
MATMUL_CASES = [Case(f"MatMul-{a}x{b}-{'sym' if sym else 'static'}", [node("MatMul", "a", "b")],
                     {"a": a, "b": b}, lambda a, b: a @ b, symbolic=sym)
                for a, b in MATMUL_SHAPES for sym in (False, True)]


# -- elementwise -------------------------------------------------------------------

BROADCAST_SHAPES = [((2, 3, 4, 5), (2, 3, 4, 5)), ((2, 3, 4, 5), (3, 1, 1)), ((2, 3, 4, 5), (1,)),
                    ((4, 5), (2, 3, 4, 5)), ((2, 1, 4, 1), (1, 3, 1, 5)), ((2, 3, 4, 5), ())]
BINARY = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div,
          "Max": torch.maximum, "Min": torch.minimum}
BINARY_CASES = [
    Case(f"{op}-{a}-{b}-{'sym' if sym else 'static'}", [node(op, "a", "b")], {"a": a, "b": b},
         lambda a, b, fn=fn: fn(a, b), symbolic=sym, opset=13 if op in ("Max", "Min") else 17,
         positive=op == "Div")
    for op, fn in BINARY.items() for a, b in BROADCAST_SHAPES for sym in (False, True)
    if op in ("Add", "Mul") or sym or a == b]

VARIADIC_CASES = [
    Case("Sum-3-broadcast", [node("Sum", "a", "b", "c")], {"a": (2, 3, 4), "b": (3, 1), "c": (4,)},
         lambda a, b, c: a + b + c),
    Case("Mean-3-broadcast", [node("Mean", "a", "b", "c")], {"a": (2, 3, 4), "b": (3, 1), "c": (4,)},
         lambda a, b, c: (a + b + c) / 3),
    Case("Max-3", [node("Max", "a", "b", "c")], {"a": (2, 3, 4), "b": (3, 1), "c": (4,)},
         lambda a, b, c: torch.maximum(torch.maximum(a, b), c), symbolic=False),
    Case("Sum-1", [node("Sum", "a")], {"a": (2, 3)}, lambda a: a),
    Case("Expand", [node("Expand", "x", "shape")], {"x": (2, 1, 4, 1)},
         lambda x, shape: x.expand(2, 3, 4, 5), {"shape": np.array([2, 3, 4, 5])}),
    Case("Expand-rank-up", [node("Expand", "x", "shape")], {"x": (4, 1)},
         lambda x, shape: x.expand(2, 4, 3), {"shape": np.array([2, 1, 3])}),
    Case("Where-const-cond", [node("Where", "cond", "a", "b")], {"a": (2, 3, 4), "b": (3, 1)},
         lambda a, b, cond: torch.where(cond, a, b),
         {"cond": np.random.default_rng(5).random((3, 4)) > 0.5}),
    Case("Pow-const-3", [node("Pow", "x", "p")], {"x": (2, 3, 4)}, lambda x, p: x ** p,
         {"p": np.array(3.0, np.float32)}),
    Case("Pow-sqrt", [node("Pow", "x", "p")], {"x": (2, 3, 4)}, lambda x, p: x ** p,
         {"p": np.array(0.5, np.float32)}, positive=True),
    Case("Pow-broadcast-exponent", [node("Pow", "x", "p")], {"x": (2, 3, 1)}, lambda x, p: x ** p,
         {"p": np.array([[1.0, 2.0, 0.0, 3.0]], np.float32)}, opset=13, positive=True),
    Case("PRelu", [node("PRelu", "x", "slope")], {"x": (2, 3, 4, 5)},
         lambda x, slope: F.prelu(x, slope.flatten()), {"slope": rand(3, 1, 1)}, kinks=(0.0,)),
]


def unary(id: str, op: str, fn: Callable[..., torch.Tensor], opset: int = 17, weights: dict | None = None,
          inputs: Sequence[str] = (), kinks: tuple[float, ...] = (), positive: bool = False,
          shape: Shape = (2, 3, 4, 5), **attrs: Any) -> Case:
    return Case(f"{op}-{id}", [node(op, "x", *inputs, **attrs)], {"x": shape}, fn, weights or {}, opset,
                kinks, positive)


def hardsigmoid(alpha: float, beta: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: torch.clamp(alpha * x + beta, 0.0, 1.0)


f32 = np.float32
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
    unary("opset9-attrs", "Clip", lambda x: F.hardtanh(x, -0.5, 0.7), opset=9, min=-0.5, max=0.7,
          kinks=(-0.5, 0.7)),
    unary("opset11-inputs", "Clip", lambda x, lo, hi: F.hardtanh(x, -0.5, 0.7), opset=11,
          inputs=("lo", "hi"), weights={"lo": f32(-0.5), "hi": f32(0.7)}, kinks=(-0.5, 0.7)),
    unary("min-only", "Clip", lambda x, lo: torch.clamp(x, min=-0.3), opset=13, inputs=("lo",),
          weights={"lo": f32(-0.3)}, kinks=(-0.3,)),
    unary("max-only", "Clip", lambda x, hi: torch.clamp(x, max=0.4), opset=13, inputs=("", "hi"),
          weights={"hi": f32(0.4)}, kinks=(0.4,)),
    unary("relu6", "Clip", lambda x, **_: F.relu6(x), opset=13, inputs=("lo", "hi"),
          weights={"lo": f32(0.0), "hi": f32(6.0)}, kinks=(0.0,), shape=(2, 3, 4, 5)),
    unary("no-bounds", "Clip", lambda x: x, opset=13),
    unary("to-double", "Cast", lambda x: x, to=TensorProto.DOUBLE),
    unary("", "Identity", lambda x: x),
    unary("opset9", "Dropout", lambda x: x, opset=9, ratio=0.3),
    unary("opset13-ratio", "Dropout", lambda x, r: x, opset=13, inputs=("r",), weights={"r": f32(0.3)}),
    unary("opset11-axis1", "Softmax", lambda x: F.softmax(x.flatten(1), 1).reshape(x.shape), opset=11,
          axis=1),
    unary("opset11-axis2", "Softmax", lambda x: F.softmax(x.flatten(2), 2).reshape(x.shape), opset=11,
          axis=2),
    unary("opset11-default", "Softmax", lambda x: F.softmax(x.flatten(1), 1).reshape(x.shape), opset=11),
    unary("opset13-axis1", "Softmax", lambda x: F.softmax(x, 1), opset=13, axis=1),
    unary("opset13-default", "Softmax", lambda x: F.softmax(x, -1), opset=13),
    unary("opset11-axis1", "LogSoftmax", lambda x: F.log_softmax(x.flatten(1), 1).reshape(x.shape),
          opset=11, axis=1),
    unary("opset13-axis-2", "LogSoftmax", lambda x: F.log_softmax(x, -2), opset=13, axis=-2),
]

BN_WEIGHTS = {"scale": rand(3), "bias": rand(3, seed=2), "mean": rand(3, seed=3), "var": rand(3, positive=True)}
NORM_CASES = [
    unary(f"opset{o}", "BatchNormalization",
          lambda x, scale, bias, mean, var: F.batch_norm(x, mean, var, scale, bias, False, 0.0, 1e-3),
          opset=o, inputs=tuple(BN_WEIGHTS), weights=BN_WEIGHTS, epsilon=1e-3)
    for o in (9, 15)] + [
    unary("axis-1", "LayerNormalization", lambda x, s, b: F.layer_norm(x, (5,), s, b, 1e-5),
          inputs=("s", "b"), weights={"s": rand(5), "b": rand(5, seed=2)}),
    unary("axis1", "LayerNormalization", lambda x, s: F.layer_norm(x, (3, 4, 5), s, None, 1e-3),
          inputs=("s",), weights={"s": rand(3, 4, 5)}, axis=1, epsilon=1e-3),
    unary("", "InstanceNormalization",
          lambda x, s, b: F.instance_norm(x, weight=s, bias=b, eps=1e-5),
          inputs=("s", "b"), weights={"s": rand(3), "b": rand(3, seed=2)}),
    unary("size3", "LRN", lambda x: F.local_response_norm(x, 3, 1e-2, 0.75, 1.0), shape=(2, 6, 3, 4),
          size=3, alpha=1e-2),
    unary("size5", "LRN", lambda x: F.local_response_norm(x, 5, 0.5, 0.6, 2.0), shape=(2, 7, 3, 4),
          size=5, alpha=0.5, beta=0.6, bias=2.0),
]


# -- pooling and resizing ------------------------------------------------------------

NEG_INF = float("-inf")
MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def pool_ref(kind: str, kernel: Sequence[int], attrs: dict[str, Any]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Explicit-padding torch pooling; ceil_mode goes to torch when pads are symmetric."""
    n = len(kernel)
    strides, dilations = attrs.get("strides", [1] * n), attrs.get("dilations", [1] * n)
    ceil = bool(attrs.get("ceil_mode", 0))

    def ref(x: torch.Tensor) -> torch.Tensor:
        auto_pad = attrs.get("auto_pad", "NOTSET")
        if auto_pad.startswith("SAME"):
            begin, end = same_pads(x.shape[2:], kernel, strides, dilations, auto_pad == "SAME_UPPER")
        else:
            pads = attrs.get("pads", [0] * 2 * n)
            begin, end = pads[:n], pads[n:]
        if kind == "max":
            if begin == end:
                return MAX_POOL[n](x, kernel, strides, begin, dilations, ceil_mode=ceil)
            return MAX_POOL[n](F.pad(x, torch_pads(begin, end), value=NEG_INF), kernel, strides, 0,
                               dilations, ceil_mode=ceil)
        if begin == end:
            return AVG_POOL[n](x, kernel, strides, begin, ceil_mode=ceil,
                               count_include_pad=bool(attrs.get("count_include_pad", 0)))
        padded = F.pad(x, torch_pads(begin, end))
        total = AVG_POOL[n](padded, kernel, strides, 0, ceil_mode=ceil)
        if attrs.get("count_include_pad", 0):
            return total
        counts = AVG_POOL[n](F.pad(torch.ones_like(x), torch_pads(begin, end)), kernel, strides, 0,
                             ceil_mode=ceil)
        return total / counts

    return ref


def pool_case(id: str, op: str, shape: Shape, opset: int = 17, **attrs: Any) -> Case:
    ref = pool_ref("max" if op == "MaxPool" else "avg", attrs["kernel_shape"], attrs)
    return Case(f"{op}-{id}", [node(op, "x", **attrs)], {"x": shape}, ref, opset=opset)


POOL_CASES = [
    pool_case("k2s2", "MaxPool", (2, 3, 8, 9), kernel_shape=[2, 2], strides=[2, 2]),
    pool_case("k3s2p1-overlap", "MaxPool", (2, 3, 9, 8), kernel_shape=[3, 3], strides=[2, 2],
              pads=[1, 1, 1, 1]),
    pool_case("k3s1-asym", "MaxPool", (2, 3, 6, 7), kernel_shape=[3, 2], pads=[0, 1, 1, 0]),
    pool_case("ceil", "MaxPool", (2, 3, 8, 9), kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    pool_case("ceil-pads", "MaxPool", (2, 3, 6, 8), kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1],
              ceil_mode=1),
    pool_case("dilation2", "MaxPool", (2, 3, 8, 9), kernel_shape=[2, 3], dilations=[2, 2]),
    pool_case("same-upper", "MaxPool", (2, 3, 8, 9), kernel_shape=[3, 3], strides=[2, 2],
              auto_pad="SAME_UPPER"),
    pool_case("same-lower", "MaxPool", (2, 3, 8, 9), kernel_shape=[2, 2], strides=[2, 2],
              auto_pad="SAME_LOWER"),
    pool_case("1d", "MaxPool", (2, 3, 11), kernel_shape=[3], strides=[2]),
    pool_case("3d", "MaxPool", (1, 2, 5, 6, 4), kernel_shape=[2, 3, 2], strides=[2, 2, 1]),
    pool_case("opset9", "MaxPool", (2, 3, 8, 9), opset=9, kernel_shape=[3, 3], strides=[2, 2],
              pads=[1, 1, 1, 1]),
    pool_case("k2s2", "AveragePool", (2, 3, 8, 9), kernel_shape=[2, 2], strides=[2, 2]),
    pool_case("k3s2p1-excl", "AveragePool", (2, 3, 9, 8), kernel_shape=[3, 3], strides=[2, 2],
              pads=[1, 1, 1, 1]),
    pool_case("k3s2p1-incl", "AveragePool", (2, 3, 9, 8), kernel_shape=[3, 3], strides=[2, 2],
              pads=[1, 1, 1, 1], count_include_pad=1),
    pool_case("ceil-excl", "AveragePool", (2, 3, 8, 9), kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    pool_case("ceil-incl-pads", "AveragePool", (2, 3, 8, 7), kernel_shape=[3, 3], strides=[2, 2],
              pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1),
    pool_case("asym-excl", "AveragePool", (2, 3, 7, 6), kernel_shape=[3, 2], pads=[0, 1, 2, 1]),
    pool_case("asym-incl", "AveragePool", (2, 3, 7, 6), kernel_shape=[3, 2], pads=[0, 1, 2, 1],
              count_include_pad=1),
    pool_case("same-upper", "AveragePool", (2, 3, 8, 9), kernel_shape=[3, 3], strides=[2, 2],
              auto_pad="SAME_UPPER"),
    pool_case("1d", "AveragePool", (2, 3, 11), kernel_shape=[3], strides=[2], pads=[1, 1]),
    pool_case("3d", "AveragePool", (1, 2, 5, 6, 4), kernel_shape=[2, 3, 2], strides=[2, 2, 1]),
    pool_case("opset9", "AveragePool", (2, 3, 8, 9), opset=9, kernel_shape=[3, 3], strides=[2, 2],
              pads=[1, 1, 1, 1]),
    Case("GlobalMaxPool", [node("GlobalMaxPool", "x")], {"x": (2, 3, 5, 4)},
         lambda x: F.adaptive_max_pool2d(x, 1)),
    Case("GlobalAveragePool", [node("GlobalAveragePool", "x")], {"x": (2, 3, 5, 4)},
         lambda x: x.mean((2, 3), keepdim=True)),
    Case("GlobalAveragePool-1d", [node("GlobalAveragePool", "x")], {"x": (2, 3, 7)},
         lambda x: x.mean(2, keepdim=True)),
    Case("GlobalAveragePool-static-batch", [node("GlobalAveragePool", "x")], {"x": (2, 3, 5, 4)},
         lambda x: x.mean((2, 3), keepdim=True), symbolic=False),
    Case("GlobalAveragePool-dynamic", [node("GlobalAveragePool", "x")], {"x": (2, 3, 5, 4)},
         lambda x: x.mean((2, 3), keepdim=True), dynamic_spatial=True),
]


def source_coords(n: int, m: int, scale: float, ctm: str) -> np.ndarray:
    """ONNX Resize's coordinate transformations, straight from the operator spec."""
    i = np.arange(m, dtype=np.float64)
    if ctm == "half_pixel":
        return (i + 0.5) / scale - 0.5
    if ctm == "pytorch_half_pixel":
        return (i + 0.5) / scale - 0.5 if m > 1 else np.zeros(m)
    if ctm == "align_corners":
        return i * (n - 1) / (m - 1) if m > 1 else np.zeros(m)
    if ctm == "asymmetric":
        return i / scale
    if ctm == "tf_half_pixel_for_nn":
        return (i + 0.5) / scale
    raise ValueError(ctm)


def interp_matrix(n: int, m: int, scale: float, mode: str, ctm: str, nearest_mode: str) -> np.ndarray:
    """The [m, n] matrix of one axis of ONNX Resize (nearest or linear)."""
    x = source_coords(n, m, scale, ctm)
    out = np.zeros((m, n))
    if mode == "nearest":
        rounded = {"round_prefer_floor": np.ceil(x - 0.5), "round_prefer_ceil": np.floor(x + 0.5),
                   "floor": np.floor(x), "ceil": np.ceil(x)}[nearest_mode]
        out[np.arange(m), np.clip(rounded, 0, n - 1).astype(int)] = 1.0
        return out
    x = np.clip(x, 0, n - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = x - lo
    np.add.at(out, (np.arange(m), lo), 1 - frac)
    np.add.at(out, (np.arange(m), hi), frac)
    return out


def resize_case(id: str, shape: Shape, *, scales: Sequence[float] | None = None,
                sizes: Sequence[int] | None = None, opset: int = 13, mode: str = "nearest",
                ctm: str = "half_pixel", nearest_mode: str = "round_prefer_floor") -> Case:
    """Resize checked against the spec's per-axis matrices applied in torch."""
    factors = list(scales) if scales else [o / i for o, i in zip(sizes, shape, strict=True)]  # type: ignore[arg-type]
    out = [int(math.floor(i * s)) for i, s in zip(shape, factors, strict=True)] if scales else list(sizes)  # type: ignore[arg-type]
    mats = [torch.tensor(interp_matrix(n, m, s, mode, ctm, nearest_mode))
            for n, m, s in zip(shape[2:], out[2:], factors[2:], strict=True)]

    def ref(x: torch.Tensor, **_: Any) -> torch.Tensor:
        y = torch.einsum("nchw,Hh->ncHw", x, mats[0])
        return torch.einsum("ncHw,Ww->ncHW", y, mats[1])

    weights: dict[str, np.ndarray] = {"roi": np.zeros(0, np.float32)}
    inputs = ["roi"]
    if scales:
        weights["scales"] = np.array(scales, np.float32)
        inputs.append("scales")
    else:
        weights["sizes"] = np.array(sizes, np.int64)
        inputs += ["", "sizes"]
    attrs = dict(mode=mode, coordinate_transformation_mode=ctm)
    if mode == "nearest":
        attrs["nearest_mode"] = nearest_mode
    return Case(f"Resize-{id}", [node("Resize", "x", *inputs, **attrs)], {"x": shape}, ref, weights, opset)


RESIZE_CASES = [
    resize_case("nearest-asym-floor-x2", (2, 3, 4, 5), scales=[1, 1, 2, 2], ctm="asymmetric",
                nearest_mode="floor"),
    resize_case("nearest-half-pixel-prefer-floor", (2, 3, 4, 5), scales=[1, 1, 1.5, 2.5]),
    resize_case("nearest-half-pixel-prefer-ceil", (2, 3, 5, 4), scales=[1, 1, 1.7, 0.6],
                nearest_mode="round_prefer_ceil"),
    resize_case("nearest-align-corners", (2, 3, 4, 5), sizes=[2, 3, 7, 9], ctm="align_corners"),
    resize_case("nearest-asym-ceil", (2, 3, 4, 5), scales=[1, 1, 1.5, 2.0], ctm="asymmetric",
                nearest_mode="ceil"),
    resize_case("nearest-tf-half-pixel", (2, 3, 4, 5), scales=[1, 1, 2.0, 1.5], ctm="tf_half_pixel_for_nn",
                nearest_mode="floor"),
    resize_case("nearest-downsample", (2, 3, 8, 9), scales=[1, 1, 0.5, 0.4], ctm="asymmetric",
                nearest_mode="floor"),
    resize_case("linear-half-pixel", (2, 3, 4, 5), scales=[1, 1, 2, 1.5], mode="linear"),
    resize_case("linear-pytorch-half-pixel", (2, 3, 4, 5), sizes=[2, 3, 7, 3], mode="linear",
                ctm="pytorch_half_pixel"),
    resize_case("linear-align-corners", (2, 3, 4, 5), sizes=[2, 3, 9, 7], mode="linear",
                ctm="align_corners"),
    resize_case("linear-asymmetric", (2, 3, 4, 5), scales=[1, 1, 2.5, 2], mode="linear", ctm="asymmetric"),
    resize_case("linear-width-only", (2, 3, 4, 5), scales=[1, 1, 1, 3], mode="linear"),
    resize_case("linear-opset18", (2, 3, 4, 5), scales=[1, 1, 2, 1.5], mode="linear", opset=18),
    resize_case("nearest-opset11-sizes", (2, 3, 4, 5), sizes=[2, 3, 6, 10], opset=11, ctm="asymmetric",
                nearest_mode="floor"),
    Case("Resize-cubic-half-pixel", [node("Resize", "x", "", "scales", mode="cubic", cubic_coeff_a=-0.75)],
         {"x": (2, 3, 4, 5)},
         lambda x, scales: F.interpolate(x, scale_factor=(2.0, 1.5), mode="bicubic", align_corners=False),
         {"scales": np.array([1, 1, 2, 1.5], np.float32)}, opset=13),
    Case("Upsample-opset9-nearest", [node("Upsample", "x", "scales", mode="nearest")], {"x": (2, 3, 4, 5)},
         lambda x, scales: F.interpolate(x, scale_factor=2, mode="nearest"),
         {"scales": np.array([1, 1, 2, 2], np.float32)}, opset=9),
    Case("Resize-dynamic-sizes", [
        node("Shape", "x", out=["s"]), node("Slice", "s", "zero", "two", out=["nc"]),
        node("Concat", "nc", "hw", out=["sizes"], axis=0),
        node("Resize", "x", "", "", "sizes", mode="linear", coordinate_transformation_mode="align_corners")],
         {"x": (2, 3, 4, 5)}, lambda x, **_: F.interpolate(x, size=(7, 8), mode="bilinear", align_corners=True),
         {"zero": np.array([0]), "two": np.array([2]), "hw": np.array([7, 8])}, opset=13),
]


# -- reductions and layout -------------------------------------------------------------


def reduce_case(id: str, op: str, fn: Callable[..., torch.Tensor], opset: int,
                axes_input: Sequence[int] | None = None, **attrs: Any) -> Case:
    weights = {} if axes_input is None else {"axes": np.array(axes_input, np.int64)}
    return Case(f"{op}-{id}", [node(op, "x", *weights, **attrs)], {"x": (2, 3, 4, 5)},
                lambda x, **_: fn(x), weights, opset)


REDUCE_CASES = [
    reduce_case("opset11-attr", "ReduceSum", lambda x: x.sum((2, 3), keepdim=True), 11, axes=[2, 3]),
    reduce_case("opset13-input", "ReduceSum", lambda x: x.sum(1), 13, axes_input=[1], keepdims=0),
    reduce_case("all", "ReduceSum", lambda x: x.sum(), 13, keepdims=0),
    reduce_case("noop", "ReduceSum", lambda x: x, 13, noop_with_empty_axes=1),
    reduce_case("empty-axes", "ReduceSum", lambda x: x.sum(), 13, axes_input=[], keepdims=0),
    reduce_case("opset13-attr", "ReduceMean", lambda x: x.mean(-1), 13, axes=[-1], keepdims=0),
    reduce_case("opset18-input", "ReduceMean", lambda x: x.mean((1, 3), keepdim=True), 18,
                axes_input=[1, 3]),
    reduce_case("all-keepdims", "ReduceMean", lambda x: x.mean((0, 1, 2, 3), keepdim=True), 18),
    reduce_case("opset18", "ReduceMax", lambda x: x.amax(1), 18, axes_input=[1], keepdims=0),
    reduce_case("opset13", "ReduceMin", lambda x: x.amin((2, 3), keepdim=True), 13, axes=[2, 3]),
]

LAYOUT_CASES = [
    unary("axis1-opset11", "Flatten", lambda x: x.flatten(1), opset=11, axis=1),
    unary("axis2", "Flatten", lambda x: x.reshape(x.shape[0] * x.shape[1], -1), axis=2),
    # Reshape back to X's shape: a constant target (−1 for the batch), or Shape(X) at run time.
    Case("Flatten-static", [node("Flatten", "x")], {"x": (2, 3, 4, 5)}, lambda x: x.flatten(1), symbolic=False),
    Case("Flatten-dynamic", [node("Flatten", "x")], {"x": (2, 3, 4, 5)}, lambda x: x.flatten(1),
         dynamic_spatial=True),
    unary("", "Reshape", lambda x, s: x.reshape(2, -1, 5), inputs=("s",), weights={"s": np.array([0, -1, 5])}),
    unary("opset11", "Squeeze", lambda x: x.squeeze(1), opset=11, shape=(2, 1, 3, 1), axes=[1]),
    unary("opset13", "Squeeze", lambda x, a: x.squeeze(3).squeeze(1), opset=13, shape=(2, 1, 3, 1),
          inputs=("a",), weights={"a": np.array([1, -1])}),
    unary("opset11", "Unsqueeze", lambda x: x[:, None, ..., None], opset=11, shape=(2, 3, 4), axes=[1, -1]),
    unary("opset13", "Unsqueeze", lambda x, a: x[:, :, None], opset=13, shape=(2, 3, 4),
          inputs=("a",), weights={"a": np.array([2])}),
    unary("perm", "Transpose", lambda x: x.permute(0, 2, 3, 1), perm=[0, 2, 3, 1]),
    unary("reverse", "Transpose", lambda x: x.permute(3, 2, 1, 0)),
    Case("Concat-axis1-with-const", [node("Concat", "a", "w", "b", axis=1)], {"a": (2, 3, 4), "b": (2, 2, 4)},
         lambda a, b, w: torch.cat([a, w, b], 1), {"w": rand(2, 1, 4)}),
    Case("Concat-axis-1", [node("Concat", "a", "b", axis=-1)], {"a": (2, 3, 4), "b": (2, 3, 1)},
         lambda a, b: torch.cat([a, b], -1)),
    Case("Split-opset11-attr", [node("Split", "x", out=["y", "z"], axis=1, split=[2, 3])], {"x": (2, 5, 3)},
         lambda x: x[:, :2], opset=11),
    Case("Split-opset13-input", [node("Split", "x", "sp", out=["z", "y"], axis=-1)], {"x": (2, 3, 5)},
         lambda x, sp: x[..., 1:], {"sp": np.array([1, 4])}, opset=13),
    Case("Split-opset18-num-outputs", [node("Split", "x", out=["a", "y", "c"], axis=1, num_outputs=3)],
         {"x": (2, 6, 3)}, lambda x: x[:, 2:4], opset=18),
    unary("opset9-attrs", "Slice", lambda x: x[:, 1:3, :, -3:], opset=9, starts=[1, -3], ends=[3, INT_MAX],
          axes=[1, 3]),
    unary("steps", "Slice", lambda x, s, e, a, st: x[:, :, [3, 1], ::2], opset=13,
          inputs=("s", "e", "a", "st"),
          weights={"s": np.array([3, 0]), "e": np.array([0, INT_MAX]), "a": np.array([2, -1]),
                   "st": np.array([-2, 2])}),
    unary("no-axes", "Slice", lambda x, s, e: x[1:, :2, 1:-1], opset=13, inputs=("s", "e"),
          weights={"s": np.array([1, 0, 1]), "e": np.array([5, 2, -1])}),
    unary("constant", "Pad", lambda x, p, v: F.pad(x, (1, 2, 0, 1), value=0.5), opset=11,
          inputs=("p", "v"), weights={"p": np.array([0, 0, 0, 1, 0, 0, 1, 2]), "v": f32(0.5)}),
    unary("reflect", "Pad", lambda x, p: F.pad(x, (2, 1, 1, 2), mode="reflect"), opset=13, inputs=("p",),
          weights={"p": np.array([0, 0, 1, 2, 0, 0, 2, 1])}, mode="reflect"),
    unary("edge", "Pad", lambda x, p: F.pad(x, (2, 3, 1, 0), mode="replicate"), opset=13, inputs=("p",),
          weights={"p": np.array([0, 0, 1, 2, 0, 0, 0, 3])}, mode="edge"),
    unary("opset18-axes", "Pad", lambda x, **_: F.pad(x, (1, 1)), opset=18, inputs=("p", "", "a"),
          weights={"p": np.array([1, 1]), "a": np.array([-1])}),
    unary("opset9-attrs", "Pad", lambda x: F.pad(x, (0, 0, 2, 1), value=0.0), opset=9,
          pads=[0, 0, 2, 0, 0, 0, 1, 0]),
    unary("axis0-duplicates", "Gather", lambda x, i: x[[1, 0, 1, -1]], inputs=("i",),
          weights={"i": np.array([1, 0, 1, -1])}, shape=(3, 4, 5)),
    unary("axis1-scalar", "Gather", lambda x, i: x[:, 2], inputs=("i",), weights={"i": np.array(2)}, axis=1),
    unary("axis2-2d", "Gather", lambda x, i: x[:, :, [[0, 3], [3, 3]]], inputs=("i",),
          weights={"i": np.array([[0, 3], [3, 3]])}, axis=2),
    unary("", "GatherElements", lambda x, i: torch.gather(x, 1, i), inputs=("i",),
          weights={"i": np.random.default_rng(4).integers(0, 3, (2, 5, 4, 5))}, axis=1),
    unary("", "Tile", lambda x, r: x.repeat(1, 2, 1, 3), inputs=("r",), weights={"r": np.array([1, 2, 1, 3])}),
    unary("crd", "DepthToSpace", lambda x: F.pixel_shuffle(x, 2), shape=(2, 8, 3, 4), blocksize=2, mode="CRD"),
    unary("dcr", "DepthToSpace", lambda x: x.reshape(2, 2, 2, 2, 3, 4).permute(0, 3, 4, 1, 5, 2).reshape(2, 2, 6, 8),
          shape=(2, 8, 3, 4), blocksize=2),
    unary("", "SpaceToDepth", lambda x: x.reshape(2, 3, 2, 2, 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(2, 12, 2, 2),
          shape=(2, 3, 4, 4), blocksize=2),
]


def small_net_case(opset: int) -> Case:
    """Conv → Relu → MaxPool → Flatten → Gemm → Softmax at recent opsets (no upgrade needed)."""
    nodes = [node("Conv", "x", "W", out=["c"], pads=[1, 1, 1, 1]), node("Relu", "c", out=["r"]),
             node("MaxPool", "r", out=["p"], kernel_shape=[2, 2], strides=[2, 2]), node("Flatten", "p", out=["f"]),
             node("Gemm", "f", "V", out=["g"], transB=1), node("Softmax", "g")]

    def ref(x: torch.Tensor, W: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        return F.softmax(F.max_pool2d(F.relu(F.conv2d(x, W, padding=1)), 2).flatten(1) @ V.T, -1)

    return Case(f"net-opset{opset}", nodes, {"x": (2, 3, 4, 4)}, ref, {"W": rand(2, 3, 3, 3), "V": rand(5, 8)},
                opset, kinks=(0.0,))


NET_CASES = [small_net_case(opset) for opset in (18, 19, 21, 22, 23, 24, 25, 26)]

OP_CASES = (CONV_CASES + GEMM_CASES + MATMUL_CASES + BINARY_CASES + VARIADIC_CASES + UNARY_CASES
            + NORM_CASES + POOL_CASES + RESIZE_CASES + REDUCE_CASES + LAYOUT_CASES + NET_CASES)


@pytest.mark.parametrize("case", OP_CASES, ids=repr)
def test_op_matches_torch(case: Case) -> None:
    check(case)


# -- the form of the Conv gradient -------------------------------------------------------


def backward_ops(model: onnx.ModelProto, **kwargs: Any) -> list[str]:
    """Op types of the nodes ``build_backward`` added, constants and the output Identity aside."""
    backward = build_backward(model, ["y"], **kwargs)
    return sorted(n.op_type for n in backward.graph.node
                  if n.name.startswith("bwd/") and n.op_type not in ("Constant", "Identity"))


RUN_TIME_SHAPES = {"Shape", "Gather", "Concat", "Max", "Neg", "Sub", "Add", "Pad", "ConstantOfShape"}


@pytest.mark.parametrize(("x", "w", "attrs", "dynamic", "ops"), [
    ((1, 8, 9, 9), (8, 8, 3, 3), {"pads": [1, 1, 1, 1]}, False, ["Conv"]),
    ((1, 8, 9, 9), (8, 8, 3, 3), {"pads": [1, 1, 1, 1]}, True, ["Conv"]),
    ((1, 8, 9, 9), (8, 1, 5, 5), {"pads": [2, 2, 2, 2], "group": 8}, True, ["Conv"]),
    ((1, 8, 9, 9), (8, 8, 1, 1), {"pads": [1, 0, 0, 0]}, False, ["Conv", "Slice"]),
    ((1, 8, 9, 9), (8, 8, 3, 3), {"auto_pad": "SAME_UPPER"}, True, ["Conv"]),
    ((1, 8, 9, 9), (16, 8, 3, 3), {"pads": [0, 0, 1, 1], "strides": [2, 2]}, False, ["ConvTranspose"]),
    ((1, 8, 9, 9), (8, 1, 3, 3), {"pads": [0, 0, 1, 1], "strides": [2, 2], "group": 8}, False,
     ["Conv", "Mul", "Resize"]),
], ids=["s1", "s1-dynamic", "depthwise-s1-dynamic", "pads-beyond-kernel", "same-s1-dynamic", "s2", "depthwise-s2"])
def test_static_conv_gradient_has_no_run_time_shape_arithmetic(x: Shape, w: Shape, attrs: dict[str, Any],
                                                               dynamic: bool, ops: list[str]) -> None:
    model = make_model([node("Conv", "x", "W", **attrs)], {"x": x}, 17, {"W": rand(*w)}, dynamic_spatial=dynamic)
    assert backward_ops(model) == ops


def test_strided_conv_with_run_time_sizes_takes_the_general_path() -> None:
    attrs = {"pads": [0, 0, 1, 1], "strides": [2, 2], "group": 8}
    model = make_model([node("Conv", "x", "W", **attrs)], {"x": (1, 8, 9, 9)}, 17, {"W": rand(8, 1, 3, 3)},
                       dynamic_spatial=True)
    ops = backward_ops(model)
    assert "ConvTranspose" in ops and RUN_TIME_SHAPES & set(ops)


def test_flipped_kernels_are_initializers_made_once_per_weight() -> None:
    """Two Convs sharing one weight: one flipped copy, stored as an initializer, not a Constant."""
    nodes = [node("Conv", "x", "W", out=["a"], pads=[1, 1, 1, 1]), node("Relu", "a", out=["r"]),
             node("Conv", "r", "W", out=["y"], pads=[1, 1, 1, 1])]
    model = make_model(nodes, {"x": (1, 4, 6, 6)}, 17, {"W": rand(4, 4, 3, 3)})
    backward = build_backward(model, ["y"])
    added = [t for t in backward.graph.initializer if t.name.startswith("bwd/")]
    assert len(added) == 1 and tuple(added[0].dims) == (4, 4, 3, 3)
    assert all(math.prod(n.attribute[0].t.dims) <= 4 for n in backward.graph.node if n.op_type == "Constant")
    np.testing.assert_array_equal(numpy_helper.to_array(added[0]),
                                  np.flip(rand(4, 4, 3, 3).swapaxes(0, 1), axis=(2, 3)))


def test_zero_lattice_is_an_initializer_shared_by_equal_layers() -> None:
    attrs = {"pads": [0, 0, 1, 1], "strides": [2, 2], "group": 4}
    nodes = [node("Conv", "x", "W1", out=["a"], **attrs), node("Conv", "x", "W2", out=["b"], **attrs),
             node("Add", "a", "b")]
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


def test_clip_mask_leaves_the_pre_activation_to_the_conv() -> None:
    """The Clip mask reads Y, so X feeds only Clip and onnxruntime can fuse Conv+Clip."""
    nodes = [node("Conv", "x", "W", out=["c"], pads=[1, 1, 1, 1]), node("Clip", "c", "lo", "hi", out=["y"])]
    model = make_model(nodes, {"x": (1, 4, 6, 6)}, 13, {"W": rand(4, 4, 3, 3), "lo": f32(0.0), "hi": f32(6.0)})
    backward = build_backward(model, ["y"])
    assert [n.op_type for n in backward.graph.node if "c" in n.input] == ["Clip"]


def test_gradients_declare_their_shapes_with_the_batch_symbol() -> None:
    """Without the declared shapes, inference names the batch of every gradient after the
    classifier's Reshape anew, and onnxruntime cannot keep those gradients blocked."""
    nodes = [node("Conv", "x", "W", out=["c"], pads=[1, 1, 1, 1]), node("Relu", "c", out=["r"]),
             node("Flatten", "r", out=["f"]), node("Gemm", "f", "G", transB=1)]
    model = make_model(nodes, {"x": (2, 4, 3, 3)}, 17, {"W": rand(4, 4, 3, 3), "G": rand(5, 36)})
    backward = build_backward(model, ["y"])
    declared = {vi.name: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
                for vi in backward.graph.value_info}
    producer = {o: n for n in backward.graph.node for o in n.output}
    x_grad = producer[grad_output_name("x")].input[0]
    assert declared[x_grad] == ["N0", 4, 3, 3]
    masked = producer[producer[x_grad].input[0]]  # x's gradient Conv ← Relu's mask ← Flatten's Reshape
    assert masked.op_type == "Mul" and declared[masked.input[0]] == ["N0", 4, 3, 3]


# -- kinks and ties: torch's conventions, exactly ----------------------------------------

TIE_CASES = [
    # Values on a coarse grid: many equal maxima in overlapping windows; torch picks the first.
    (Case("MaxPool-ties", [node("MaxPool", "x", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])],
          {"x": (2, 2, 5, 6)}, lambda x: F.max_pool2d(x, 3, 1, 1)),
     lambda rng, s: np.round(rng.standard_normal(s)).clip(0, 1)),
    (Case("MaxPool-ties-s2", [node("MaxPool", "x", kernel_shape=[2, 2], strides=[2, 2])], {"x": (1, 2, 6, 6)},
          lambda x: F.max_pool2d(x, 2, 2)), lambda rng, s: np.ones(s)),
    (Case("GlobalMaxPool-ties", [node("GlobalMaxPool", "x")], {"x": (2, 3, 4, 4)},
          lambda x: F.adaptive_max_pool2d(x, 1)), lambda rng, s: np.round(rng.random(s))),
    (unary("zeros", "Relu", F.relu), lambda rng, s: np.round(rng.standard_normal(s))),
    (unary("bounds", "Clip", lambda x, lo, hi: F.hardtanh(x, -1.0, 1.0), opset=13, inputs=("lo", "hi"),
           weights={"lo": f32(-1), "hi": f32(1)}), lambda rng, s: np.round(rng.standard_normal(s) * 1.5)),
    (unary("relu6-bounds", "Clip", F.relu6, opset=9, min=0.0, max=6.0),
     lambda rng, s: rng.integers(-1, 8, s).astype(float)),
    (unary("zero", "LeakyRelu", lambda x: F.leaky_relu(x, 0.2), alpha=0.2),
     lambda rng, s: np.round(rng.standard_normal(s))),
    (unary("zero", "Abs", torch.abs), lambda rng, s: np.round(rng.standard_normal(s))),
    (unary("kinks", "HardSwish", F.hardswish, opset=14), lambda rng, s: rng.integers(-4, 5, s).astype(float)),
    (unary("kinks", "HardSigmoid", F.hardsigmoid, alpha=1 / 6, beta=0.5),
     lambda rng, s: rng.integers(-4, 5, s).astype(float)),
    (Case("Max-ties", [node("Max", "a", "b")], {"a": (2, 3, 4), "b": (2, 3, 4)}, torch.maximum),
     lambda rng, s: np.round(rng.standard_normal(s))),
    (Case("Min-ties-broadcast", [node("Min", "a", "b")], {"a": (2, 3, 4), "b": (4,)}, torch.minimum),
     lambda rng, s: np.round(rng.standard_normal(s))),
    (reduce_case("ties", "ReduceMax", lambda x: x.amax((2, 3)), 18, axes_input=[2, 3], keepdims=0),
     lambda rng, s: np.round(rng.random(s))),
]


@pytest.mark.parametrize(("case", "values"), TIE_CASES, ids=[c.id for c, _ in TIE_CASES])
def test_ties_follow_torch(case: Case, values: Callable[[np.random.Generator, Shape], np.ndarray]) -> None:
    rng = np.random.default_rng(7)
    inputs = {k: values(rng, s).astype(np.float32) for k, s in case.inputs.items()}
    _, dy, ref = torch_grads(case.ref, inputs, case.weights, lambda s: rng.standard_normal(s).astype(np.float32))
    out = run_backward(make_model(case.nodes, case.inputs, case.opset, case.weights), inputs, {"y": dy})
    for name in case.inputs:
        np.testing.assert_allclose(out[grad_output_name(name)], ref[name], rtol=0, atol=1e-6)


# -- rectifiers --------------------------------------------------------------------------

RECTIFIER_MODEL_NODES = [
    node("Conv", "x", "W1", out=["c1"], pads=[1, 1, 1, 1]), node("Relu", "c1", out=["r1"]),
    node("Conv", "r1", "W2", out=["c2"], pads=[1, 1, 1, 1]), node("Clip", "c2", "zero", "six", out=["r2"]),
    node("Conv", "r2", "W3", out=["y"]),
]
RECTIFIER_WEIGHTS = {"W1": rand(4, 3, 3, 3) * 2, "W2": rand(4, 4, 3, 3), "W3": rand(2, 4, 1, 1),
                     "zero": f32(0.0), "six": f32(1.0)}


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
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU6(),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 25, 3)).double()
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    params = {f"p{i}": p.detach().numpy().astype(np.float32) for i, p in enumerate(net.parameters())}
    nodes = [node("Conv", "x", "p0", "p1", out=["a"], pads=[1, 1, 1, 1]), node("Relu", "a", out=["b"]),
             node("Conv", "b", "p2", "p3", out=["c"], pads=[1, 1, 1, 1]), node("Clip", "c", "lo", "hi", out=["d"]),
             node("Flatten", "d", out=["e"]), node("Gemm", "e", "p4", "p5", out=["y"], transB=1)]
    model = make_model(nodes, {"x": x.shape}, 13, params | {"lo": f32(0), "hi": f32(6)})
    for method, rectifier in ((captum_attr.GuidedBackprop, "guided"), (captum_attr.Deconvolution, "deconvnet")):
        inputs = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        ref = method(net).attribute(inputs, target=1).detach().numpy()
        dy = np.zeros((2, 3), np.float32)
        dy[:, 1] = 1
        out = run_backward(model, {"x": x}, {"y": dy}, rectifier=rectifier, rectifiers="relu")
        assert_close(out[grad_output_name("x")], ref, rectifier)


# -- refusals ----------------------------------------------------------------------------


def lstm_nodes(into: str) -> list[onnx.NodeProto]:
    return [node("Transpose", "x", out=["seq"], perm=[1, 0, 2]),
            node("LSTM", "seq", "Wl", "Rl", out=[into], hidden_size=2, name="encoder/lstm")]


LSTM_WEIGHTS = {"Wl": rand(1, 8, 3), "Rl": rand(1, 8, 2)}


@pytest.mark.parametrize("opset", [9, 14])
def test_lstm_on_path_is_refused_by_name(opset: int) -> None:
    model = make_model(lstm_nodes("y"), {"x": (2, 4, 3)}, opset, LSTM_WEIGHTS)
    with pytest.raises(UnsupportedOp) as err:
        build_backward(model, ["y"])
    assert (err.value.op_type, err.value.node_name) == ("LSTM", "encoder/lstm")
    assert "LSTM" in str(err.value) and "encoder/lstm" in str(err.value)


def test_lstm_off_path_is_fine() -> None:
    nodes = lstm_nodes("h") + [node("Relu", "x", out=["y"])]
    model = make_model(nodes, {"x": (2, 4, 3)}, 14, LSTM_WEIGHTS, outputs=("y", "h"))
    x = rand(2, 4, 3)
    out = run_backward(model, {"x": x}, {"y": np.ones_like(x)})
    np.testing.assert_array_equal(out[grad_output_name("x")], (x > 0).astype(np.float32))


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("domain", ["", "com.example"])
def test_made_up_op_is_refused_with_a_stable_name(opset: int, domain: str) -> None:
    nodes = [node("Relu", "x", out=["r"]), helper.make_node("MadeUp", ["r"], ["y"], domain=domain)]
    model = make_model(nodes, {"x": (2, 3)}, opset)
    if domain:
        model.opset_import.append(helper.make_opsetid(domain, 1))
    with pytest.raises(UnsupportedOp) as err:
        build_backward(model, ["y"])
    assert (err.value.op_type, err.value.node_name) == ("MadeUp", "MadeUp#1")


@pytest.mark.parametrize(("make_nodes", "op_type", "why"), [
    (lambda: [node("RandomNormalLike", "x", out=["n"]), node("Add", "x", "n")], "RandomNormalLike", "no gradient rule"),
    (lambda: [node("If", "cond", then_branch=helper.make_graph(
        [node("Relu", "x", out=["t"])], "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)]),
        else_branch=helper.make_graph(
        [node("Neg", "x", out=["e"])], "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)]))],
     "If", "no gradient rule"),
    (lambda: [node("QuantizeLinear", "x", "scale", out=["q"]), node("DequantizeLinear", "q", "scale")],
     "QuantizeLinear", "no gradient rule"),
    (lambda: [node("LayerNormalization", "x", "scale", out=["n", "y"])], "LayerNormalization", "output 1"),
], ids=["random", "if-with-outer-scope-input", "quantize-dequantize", "layer-norm-mean-output"])
def test_ops_without_rules_on_the_path_are_refused(make_nodes: Callable[[], list[onnx.NodeProto]], op_type: str,
                                                   why: str) -> None:
    model = make_model(make_nodes(), {"x": (2, 3)}, 17, {"cond": np.array(True), "scale": f32(0.1)})
    with pytest.raises(UnsupportedOp, match=why) as err:
        build_backward(model, ["y"])
    assert (err.value.op_type, err.value.node_name) == (op_type, f"{op_type}#0")


def test_gradient_through_a_weight_input_is_refused() -> None:
    model = make_model([node("Conv", "x", "w")], {"x": (1, 2, 5, 5), "w": (3, 2, 3, 3)}, 17)
    with pytest.raises(UnsupportedOp, match="input 1"):
        build_backward(model, ["y"])


@pytest.mark.parametrize(("nodes", "seeds", "kwargs"), [
    ([node("Relu", "x")], ["nope"], {}),
    ([node("Relu", "x")], ["y"], {"wrt": ["nope"]}),
    ([node("Relu", "x")], ["y"], {"rectifier": "smooth"}),
    ([node("Relu", "x")], [], {}),
    ([node("Shape", "x")], ["y"], {}),
    ([node("BatchNormalization", "x", *BN_WEIGHTS, out=["y", "m", "v"], training_mode=1)], ["y"], {}),
], ids=["unknown-seed", "unknown-wrt", "bad-rectifier", "no-seed", "int-seed", "bn-training"])
def test_invalid_requests(nodes: list[onnx.NodeProto], seeds: list[str], kwargs: dict[str, Any]) -> None:
    model = make_model(nodes, {"x": (2, 3, 4, 4)}, 15, BN_WEIGHTS)
    with pytest.raises(InvalidArgument):
        build_backward(model, seeds, **kwargs)


# -- constants, intermediates, several seeds, fan-out, batch -----------------------------

W_CONV = rand(4, 3, 3, 3)
W_FC = rand(5, 4 * 3 * 3)


def small_net(x: torch.Tensor, W: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    h = F.relu(F.conv2d(x, W, stride=2, padding=1))
    return h.reshape(h.shape[0], -1) @ V.T


def shape_chain_model(weight_nodes: list[onnx.NodeProto], weight_name: str,
                      weights: dict[str, np.ndarray], opset: int = 13) -> onnx.ModelProto:
    """Conv → Relu → Reshape(Concat(Gather(Shape), −1)) → Gemm, as TorchScript exports it."""
    nodes = weight_nodes + [
        node("Conv", "x", weight_name, out=["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
        node("Relu", "c", out=["r"]),
        node("Shape", "r", out=["shape"]), node("Gather", "shape", "idx0", out=["n"], axis=0),
        node("Unsqueeze", "n", "ax0", out=["n1"]), node("Concat", "n1", "minus1", out=["target"], axis=0),
        node("Reshape", "r", "target", out=["flat"]), node("Gemm", "flat", "V", out=["y"], transB=1)]
    consts = {"idx0": np.array(0), "ax0": np.array([0]), "minus1": np.array([-1]), "V": W_FC}
    return make_model(nodes, {"x": (2, 3, 6, 6)}, opset, weights | consts)


@pytest.mark.parametrize("variant", ["initializer", "constant-node", "identity-over-initializer",
                                     "initializer-in-graph-input"])
def test_constant_subgraphs_need_no_rules(variant: str) -> None:
    if variant == "constant-node":
        model = shape_chain_model([const("Wc", W_CONV, np.float32)], "Wc", {})
    elif variant == "identity-over-initializer":
        model = shape_chain_model([node("Identity", "W", out=["W_shared"])], "W_shared", {"W": W_CONV})
    else:
        model = shape_chain_model([], "W", {"W": W_CONV})
    if variant == "initializer-in-graph-input":
        model.graph.input.extend([helper.make_tensor_value_info("W", TensorProto.FLOAT, W_CONV.shape)])
    x = rand(2, 3, 6, 6, seed=9)
    dy = rand(2, 5, seed=10)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = small_net(xt, torch.tensor(W_CONV, dtype=torch.float64), torch.tensor(W_FC, dtype=torch.float64))
    (ref,) = torch.autograd.grad(y, xt, torch.tensor(dy, dtype=torch.float64))
    backward = build_backward(model, ["y"])
    assert [i.name for i in backward.graph.input] == ["x", seed_input_name("y")]
    assert [o.name for o in backward.graph.output] == [grad_output_name("x")]
    out = run_backward(model, {"x": x}, {"y": dy})
    assert_close(out[grad_output_name("x")], ref.numpy())


def test_intermediate_wrt_multiple_seeds_and_batch_of_three() -> None:
    """Grad-CAM's request: the gradient at a conv output, the score kept, batch 3."""
    model = shape_chain_model([], "W", {"W": W_CONV})
    x = rand(3, 3, 6, 6, seed=11)
    dy, dr = rand(3, 5, seed=12), rand(3, 4, 3, 3, seed=13)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    c = F.conv2d(xt, torch.tensor(W_CONV, dtype=torch.float64), stride=2, padding=1)
    r = F.relu(c)
    y = r.reshape(3, -1) @ torch.tensor(W_FC, dtype=torch.float64).T
    dy_t, dr_t = torch.tensor(dy, dtype=torch.float64), torch.tensor(dr, dtype=torch.float64)
    ref_x, ref_c = torch.autograd.grad([y, r], [xt, c], [dy_t, dr_t])
    out = run_backward(model, {"x": x}, {"y": dy, "r": dr}, wrt=["c"], keep=["y"])
    assert_close(out["y"].astype(np.float64), y.detach().numpy())
    assert_close(out[grad_output_name("x")], ref_x.numpy(), "dx")
    assert_close(out[grad_output_name("c")], ref_c.numpy(), "dc")


def test_fan_out_accumulates() -> None:
    nodes = [node("Relu", "x", out=["a"]), node("Sigmoid", "x", out=["b"]), node("Mul", "a", "b", out=["ab"]),
             node("Add", "ab", "x", out=["s"]), node("Mul", "s", "s", out=["y"])]
    case = Case("fan-out", nodes, {"x": (3, 4)}, lambda x: ((F.relu(x) * torch.sigmoid(x) + x) ** 2),
                kinks=(0.0,))
    check(case)


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch(batch: int) -> None:
    nodes = [node("Conv", "x", "W", out=["c"], pads=[1, 1, 1, 1]), node("Relu", "c", out=["r"]),
             node("MaxPool", "r", out=["p"], kernel_shape=[2, 2], strides=[2, 2]),
             node("Reshape", "p", "target", out=["f"]), node("Gemm", "f", "V", "b", out=["y"], transB=1)]
    weights = {"W": W_CONV, "target": np.array([0, -1]), "V": W_FC, "b": rand(5)}
    model = make_model(nodes, {"x": (batch, 3, 6, 6)}, 13, weights)

    def ref(x: torch.Tensor, W: torch.Tensor, target: Any, V: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        p = F.max_pool2d(F.relu(F.conv2d(x, W, padding=1)), 2)
        return p.reshape(p.shape[0], -1) @ V.T + b

    inputs = {"x": rand(batch, 3, 6, 6, seed=14)}
    _, dy, ref_grads = torch_grads(ref, inputs, weights, lambda s: rand(*s, seed=15))
    assert build_backward(model, ["y"]).graph.input[1].type.tensor_type.shape.dim[0].dim_param
    out = run_backward(model, inputs, {"y": dy})
    assert_close(out[grad_output_name("x")], ref_grads["x"])


def test_no_path_gives_true_zeros() -> None:
    nodes = [node("Relu", "x", out=["r"]), node("Shape", "r", out=["s"]), node("Cast", "s", out=["sf"], to=1),
             node("Mul", "sf", "u", out=["y"])]
    model = make_model(nodes, {"x": (2, 3), "u": (2,)}, 13)
    out = run_backward(model, {"x": rand(2, 3), "u": rand(2)}, {"y": np.ones(2, np.float32)})
    np.testing.assert_array_equal(out[grad_output_name("x")], np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(out[grad_output_name("u")], np.array([2, 3], np.float32))


def test_seed_on_the_input_itself() -> None:
    model = make_model([node("Relu", "x")], {"x": (2, 3)}, 13)
    x, dx = rand(2, 3), rand(2, 3, seed=4)
    out = run_backward(model, {"x": x}, {"x": dx, "y": np.ones((2, 3), np.float32)})
    np.testing.assert_allclose(out[grad_output_name("x")], dx + (x > 0))


def test_exported_graph_passes_the_full_checker() -> None:
    model = shape_chain_model([], "W", {"W": W_CONV}, opset=11)
    backward = build_backward(model, ["y"], wrt=["c"], keep=["y"])
    onnx.checker.check_model(backward, full_check=True)
    assert all(n.name.startswith("bwd/") for n in backward.graph.node[-5:])
