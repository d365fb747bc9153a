"""graph/backward/builder.py: whole small nets at every recent opset against torch.autograd, the
declared gradient shapes, refusals (an op without a rule on the path, by name), constant
subgraphs, intermediates, several seeds, fan-out, batch sizes, and the exported graph's validity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from convscope.errors import InvalidArgument, UnsupportedOp
from convscope.graph.backward import build_backward, grad_output_name, seed_input_name
from tests.graph.backward.harness import (
    BN_WEIGHTS,
    Case,
    assert_close,
    check,
    const,
    f32,
    make_model,
    node,
    rand,
    run_backward,
    torch_grads,
)


def small_net_case(opset: int) -> Case:
    """Conv → Relu → MaxPool → Flatten → Gemm → Softmax at recent opsets (no upgrade needed)."""
    nodes = [
        node("Conv", "x", "W", out=["c"], pads=[1, 1, 1, 1]),
        node("Relu", "c", out=["r"]),
        node("MaxPool", "r", out=["p"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Flatten", "p", out=["f"]),
        node("Gemm", "f", "V", out=["g"], transB=1),
        node("Softmax", "g"),
    ]

    def ref(x: torch.Tensor, W: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        return F.softmax(F.max_pool2d(F.relu(F.conv2d(x, W, padding=1)), 2).flatten(1) @ V.T, -1)

    return Case(
        f"net-opset{opset}", nodes, {"x": (2, 3, 4, 4)}, ref, {"W": rand(2, 3, 3, 3), "V": rand(5, 8)}, opset, kinks=(0.0,)
    )


NET_CASES = [small_net_case(opset) for opset in (18, 19, 21, 22, 23, 24, 25, 26)]


def test_gradients_declare_their_shapes_with_the_batch_symbol() -> None:
    """Without the declared shapes, inference names the batch of every gradient after the
    classifier's Reshape anew, and onnxruntime cannot keep those gradients blocked."""
    nodes = [
        node("Conv", "x", "W", out=["c"], pads=[1, 1, 1, 1]),
        node("Relu", "c", out=["r"]),
        node("Flatten", "r", out=["f"]),
        node("Gemm", "f", "G", transB=1),
    ]
    model = make_model(nodes, {"x": (2, 4, 3, 3)}, 17, {"W": rand(4, 4, 3, 3), "G": rand(5, 36)})
    backward = build_backward(model, ["y"])
    declared = {vi.name: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in backward.graph.value_info}
    producer = {o: n for n in backward.graph.node for o in n.output}
    x_grad = producer[grad_output_name("x")].input[0]
    assert declared[x_grad] == ["N0", 4, 3, 3]
    masked = producer[producer[x_grad].input[0]]  # x's gradient Conv ← Relu's mask ← Flatten's Reshape
    assert masked.op_type == "Mul" and declared[masked.input[0]] == ["N0", 4, 3, 3]


# -- refusals ----------------------------------------------------------------------------


def lstm_nodes(into: str) -> list[onnx.NodeProto]:
    return [
        node("Transpose", "x", out=["seq"], perm=[1, 0, 2]),
        node("LSTM", "seq", "Wl", "Rl", out=[into], hidden_size=2, name="encoder/lstm"),
    ]


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


@pytest.mark.parametrize(
    ("make_nodes", "op_type", "why"),
    [
        (lambda: [node("RandomNormalLike", "x", out=["n"]), node("Add", "x", "n")], "RandomNormalLike", "no gradient rule"),
        (
            lambda: [
                node(
                    "If",
                    "cond",
                    then_branch=helper.make_graph(
                        [node("Relu", "x", out=["t"])], "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)]
                    ),
                    else_branch=helper.make_graph(
                        [node("Neg", "x", out=["e"])], "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)]
                    ),
                )
            ],
            "If",
            "no gradient rule",
        ),
        (
            lambda: [node("QuantizeLinear", "x", "scale", out=["q"]), node("DequantizeLinear", "q", "scale")],
            "QuantizeLinear",
            "no gradient rule",
        ),
        (lambda: [node("LayerNormalization", "x", "scale", out=["n", "y"])], "LayerNormalization", "output 1"),
    ],
    ids=["random", "if-with-outer-scope-input", "quantize-dequantize", "layer-norm-mean-output"],
)
def test_ops_without_rules_on_the_path_are_refused(
    make_nodes: Callable[[], list[onnx.NodeProto]], op_type: str, why: str
) -> None:
    model = make_model(make_nodes(), {"x": (2, 3)}, 17, {"cond": np.array(True), "scale": f32(0.1)})
    with pytest.raises(UnsupportedOp, match=why) as err:
        build_backward(model, ["y"])
    assert (err.value.op_type, err.value.node_name) == (op_type, f"{op_type}#0")


def test_gradient_through_a_weight_input_is_refused() -> None:
    model = make_model([node("Conv", "x", "w")], {"x": (1, 2, 5, 5), "w": (3, 2, 3, 3)}, 17)
    with pytest.raises(UnsupportedOp, match="input 1"):
        build_backward(model, ["y"])


@pytest.mark.parametrize(
    ("nodes", "seeds", "kwargs"),
    [
        ([node("Relu", "x")], ["nope"], {}),
        ([node("Relu", "x")], ["y"], {"wrt": ["nope"]}),
        ([node("Relu", "x")], ["y"], {"rectifier": "smooth"}),
        ([node("Relu", "x")], [], {}),
        ([node("Shape", "x")], ["y"], {}),
        ([node("BatchNormalization", "x", *BN_WEIGHTS, out=["y", "m", "v"], training_mode=1)], ["y"], {}),
    ],
    ids=["unknown-seed", "unknown-wrt", "bad-rectifier", "no-seed", "int-seed", "bn-training"],
)
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


def shape_chain_model(
    weight_nodes: list[onnx.NodeProto], weight_name: str, weights: dict[str, np.ndarray], opset: int = 13
) -> onnx.ModelProto:
    """Conv → Relu → Reshape(Concat(Gather(Shape), −1)) → Gemm, as TorchScript exports it."""
    nodes = weight_nodes + [
        node("Conv", "x", weight_name, out=["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
        node("Relu", "c", out=["r"]),
        node("Shape", "r", out=["shape"]),
        node("Gather", "shape", "idx0", out=["n"], axis=0),
        node("Unsqueeze", "n", "ax0", out=["n1"]),
        node("Concat", "n1", "minus1", out=["target"], axis=0),
        node("Reshape", "r", "target", out=["flat"]),
        node("Gemm", "flat", "V", out=["y"], transB=1),
    ]
    consts = {"idx0": np.array(0), "ax0": np.array([0]), "minus1": np.array([-1]), "V": W_FC}
    return make_model(nodes, {"x": (2, 3, 6, 6)}, opset, weights | consts)


@pytest.mark.parametrize("variant", ["initializer", "constant-node", "identity-over-initializer", "initializer-in-graph-input"])
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
    nodes = [
        node("Relu", "x", out=["a"]),
        node("Sigmoid", "x", out=["b"]),
        node("Mul", "a", "b", out=["ab"]),
        node("Add", "ab", "x", out=["s"]),
        node("Mul", "s", "s", out=["y"]),
    ]
    case = Case("fan-out", nodes, {"x": (3, 4)}, lambda x: (F.relu(x) * torch.sigmoid(x) + x) ** 2, kinks=(0.0,))
    check(case)


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch(batch: int) -> None:
    nodes = [
        node("Conv", "x", "W", out=["c"], pads=[1, 1, 1, 1]),
        node("Relu", "c", out=["r"]),
        node("MaxPool", "r", out=["p"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Reshape", "p", "target", out=["f"]),
        node("Gemm", "f", "V", "b", out=["y"], transB=1),
    ]
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
    nodes = [
        node("Relu", "x", out=["r"]),
        node("Shape", "r", out=["s"]),
        node("Cast", "s", out=["sf"], to=1),
        node("Mul", "sf", "u", out=["y"]),
    ]
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


@pytest.mark.parametrize("case", NET_CASES, ids=repr)
def test_op_matches_torch(case: Case) -> None:
    check(case)
