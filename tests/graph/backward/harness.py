"""Per-op oracle tests of the backward graph pass against ``torch.autograd``.

Each case is a one-op (or few-op) ONNX model built inline and an equivalent torch
expression.  The backward model runs on plain onnxruntime CPU; its input gradient
for a random seed ``dY`` must match ``torch.autograd.grad(y, x, dY)`` (computed in
float64) to ``atol = 1e-5·max|ref| + 1e-6``.  Inputs are kept away from kinks except
in the tie tests, which pin torch's conventions exactly.

The shared harness of the per-rules-module tests beside it (``rules/test_rules_<module>.py``)
and of ``test_builder.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from convscope.graph.backward import build_backward, grad_output_name, seed_input_name

CPU = ["CPUExecutionProvider"]
INT_MAX = 2**63 - 1

Shape = tuple[int, ...]


# -- harness -----------------------------------------------------------------------


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: dict[str, Shape],
    opset: int,
    weights: dict[str, np.ndarray] | None = None,
    outputs: Sequence[str] = ("y",),
    symbolic: bool = True,
    input_type: int = TensorProto.FLOAT,
    dynamic_spatial: bool = False,
) -> onnx.ModelProto:
    """A model over float inputs; with ``symbolic`` each input's first dim is its own symbol,
    with ``dynamic_spatial`` so is every dim after the second (sizes known at run time only)."""

    def dims(k: int, shape: Shape) -> list[int | str]:
        out: list[int | str] = list(shape)
        if symbolic and shape:
            out[0] = f"N{k}"
        if dynamic_spatial:
            out[2:] = [f"S{k}_{i}" for i in range(2, len(shape))]
        return out

    value_infos = [
        helper.make_tensor_value_info(name, input_type, dims(k, shape)) for k, (name, shape) in enumerate(inputs.items())
    ]
    graph = helper.make_graph(
        list(nodes),
        "case",
        value_infos,
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (weights or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    return model


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    onnx.checker.check_model(model)
    assert model.ir_version <= 13
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    return ort.InferenceSession(model.SerializeToString(), providers=CPU)


def run_backward(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], seeds: dict[str, np.ndarray], **kwargs: Any
) -> dict[str, np.ndarray]:
    before = model.SerializeToString()
    backward = build_backward(model, list(seeds), **kwargs)
    assert model.SerializeToString() == before, "build_backward mutated its argument"
    sess = session(backward)
    types = {i.name: i.type for i in sess.get_inputs()}
    feed = dict(feeds)
    for name, value in seeds.items():
        feed[seed_input_name(name)] = value.astype(np.float64 if "double" in types[seed_input_name(name)] else np.float32)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feed), strict=True))


def assert_close(ours: np.ndarray, ref: np.ndarray, what: str = "") -> None:
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    atol = 1e-5 * float(np.abs(ref).max(initial=0.0)) + 1e-6
    np.testing.assert_allclose(ours, ref, rtol=0, atol=atol, err_msg=what)


def torch_grads(
    ref: Callable[..., torch.Tensor],
    inputs: dict[str, np.ndarray],
    weights: dict[str, np.ndarray],
    dy: Callable[[Shape], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    xs = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in inputs.items()}
    ws = {
        k: torch.tensor(np.asarray(v), dtype=torch.float64 if np.asarray(v).dtype.kind == "f" else None)
        for k, v in weights.items()
    }
    y = ref(*xs.values(), **ws)
    seed = dy(tuple(y.shape))
    grads = torch.autograd.grad(y, list(xs.values()), torch.tensor(seed, dtype=torch.float64), allow_unused=True)
    return (
        y.detach().numpy(),
        seed,
        {k: (np.zeros_like(inputs[k]) if g is None else g.numpy()) for k, g in zip(xs, grads, strict=True)},
    )


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
    y_ref, dy, ref = torch_grads(case.ref, inputs, case.weights, lambda s: rng.standard_normal(s).astype(np.float32))
    model = make_model(
        case.nodes, case.inputs, case.opset, case.weights, symbolic=case.symbolic, dynamic_spatial=case.dynamic_spatial
    )
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
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype=dtype), name))


def torch_pads(begin: Sequence[int], end: Sequence[int]) -> list[int]:
    """ONNX [b0, b1, …, e0, e1, …] → F.pad's last-axis-first pairs."""
    return [p for b, e in zip(reversed(begin), reversed(end), strict=True) for p in (b, e)]


def same_pads(
    size: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int], upper: bool
) -> tuple[list[int], list[int]]:
    begin, end = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations, strict=True):
        total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
        b = total // 2 if upper else total - total // 2
        begin.append(b)
        end.append(total - b)
    return begin, end


def unary(
    id: str,
    op: str,
    fn: Callable[..., torch.Tensor],
    opset: int = 17,
    weights: dict | None = None,
    inputs: Sequence[str] = (),
    kinks: tuple[float, ...] = (),
    positive: bool = False,
    shape: Shape = (2, 3, 4, 5),
    **attrs: Any,
) -> Case:
    return Case(f"{op}-{id}", [node(op, "x", *inputs, **attrs)], {"x": shape}, fn, weights or {}, opset, kinks, positive)


def hardsigmoid(alpha: float, beta: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: torch.clamp(alpha * x + beta, 0.0, 1.0)


f32 = np.float32


def reduce_case(
    id: str, op: str, fn: Callable[..., torch.Tensor], opset: int, axes_input: Sequence[int] | None = None, **attrs: Any
) -> Case:
    weights = {} if axes_input is None else {"axes": np.array(axes_input, np.int64)}
    return Case(f"{op}-{id}", [node(op, "x", *weights, **attrs)], {"x": (2, 3, 4, 5)}, lambda x, **_: fn(x), weights, opset)


BN_WEIGHTS = {"scale": rand(3), "bias": rand(3, seed=2), "mean": rand(3, seed=3), "var": rand(3, positive=True)}


def check_ties(case: Case, values: Callable[[np.random.Generator, Shape], np.ndarray]) -> None:
    """At kinks and ties the gradient must be torch's exactly (its conventions, not a tolerance)."""
    rng = np.random.default_rng(7)
    inputs = {k: values(rng, s).astype(np.float32) for k, s in case.inputs.items()}
    _, dy, ref = torch_grads(case.ref, inputs, case.weights, lambda s: rng.standard_normal(s).astype(np.float32))
    out = run_backward(make_model(case.nodes, case.inputs, case.opset, case.weights), inputs, {"y": dy})
    for name in case.inputs:
        np.testing.assert_allclose(out[grad_output_name(name)], ref[name], rtol=0, atol=1e-6)
