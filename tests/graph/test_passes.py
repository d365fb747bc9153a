"""expose and make_batch_dynamic on tiny models built in code."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from convscope.errors import NotFound
from convscope.graph.analysis import data_tensors
from convscope.graph.dynamic_batch import make_batch_dynamic
from convscope.graph.expose import expose
from tests.forward_oracle import assert_same_activation, reference_tensors

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, initializers=(), opset=17, list_initializers_as_inputs=False):
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=list(initializers))
    if list_initializers_as_inputs:  # what pre-IR-4 exporters did
        graph.input.extend(helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _run(model, feeds, outputs=None):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(outputs or [o.name for o in session.get_outputs()], session.run(outputs, feeds)))


def conv_relu_reshape(batch_dim, *, weights_in_constant=False, initializers_as_inputs=False):
    """x → Conv → Relu → Shape/Gather/Concat-free Reshape [1, -1] → Gemm: a baked batch of 1."""
    weight = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    dense = RNG.standard_normal((4 * 6 * 6, 5)).astype(np.float32)
    initializers = [numpy_helper.from_array(np.array([1, -1], np.int64), "target"), numpy_helper.from_array(dense, "dense")]
    nodes = []
    if weights_in_constant:
        nodes.append(helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(weight)))
    else:
        initializers.append(numpy_helper.from_array(weight, "w"))
    nodes += [
        helper.make_node("Conv", ["x", "w"], ["conv"], name="conv"),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("Reshape", ["relu", "target"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "dense"], ["logits"], name="head"),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch_dim, 5])],
        initializers,
        list_initializers_as_inputs=initializers_as_inputs,
    )


def test_data_tensors_skip_shape_arithmetic_and_constants():
    model = _model(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Shape", ["r"], ["s"]),
            helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
            helper.make_node("Identity", ["w"], ["w_shared"]),
            helper.make_node("Add", ["r", "w_shared"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.ones(3, np.float32), "w")],
    )
    assert data_tensors(model.graph) == ["r", "y"]


@pytest.mark.parametrize("variant", [{}, {"weights_in_constant": True}, {"initializers_as_inputs": True}])
def test_expose_returns_what_onnxruntime_computes(variant):
    model = conv_relu_reshape(1, **variant)
    exposed = expose(model, ["conv", "relu"])
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    got = _run(exposed, {"x": x}, ["conv", "relu", "logits"])
    reference = reference_tensors(model, {"x": x}, ["conv", "relu"])
    for tensor in ("conv", "relu"):
        assert_same_activation(got[tensor], reference[tensor])
    np.testing.assert_array_equal(got["logits"], _run(model, {"x": x})["logits"])
    assert [o.name for o in model.graph.output] == ["logits"], "the pass must not mutate its input"


def test_expose_all_and_unknown():
    model = conv_relu_reshape(1)
    assert [o.name for o in expose(model).graph.output] == ["logits", "conv", "relu", "flat"]
    with pytest.raises(NotFound, match="nope"):
        expose(model, ["nope"])


@pytest.mark.parametrize("variant", [{}, {"weights_in_constant": True}, {"initializers_as_inputs": True}])
@pytest.mark.parametrize("batch_dim", [1, "N"])
def test_dynamic_batch_rewrites_baked_reshape(batch_dim, variant):
    model = conv_relu_reshape(batch_dim, **variant)
    dynamic = make_batch_dynamic(model)
    pair = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    batched = _run(dynamic, {"x": pair})["logits"]
    singles = np.concatenate([_run(model, {"x": pair[i : i + 1]})["logits"] for i in range(2)])
    np.testing.assert_allclose(batched, singles, rtol=1e-5, atol=1e-5)
    target = next(i for i in dynamic.graph.initializer if i.name.startswith("target__dynamic_batch"))
    assert numpy_helper.to_array(target).tolist() == [0, -1]
    assert dynamic.graph.input[0].type.tensor_type.shape.dim[0].dim_param


def test_dynamic_batch_leaves_constant_reshapes_alone():
    model = _model(
        [
            helper.make_node("Reshape", ["bias", "target"], ["bias4"]),
            helper.make_node("Add", ["x", "bias4"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2, 2])],
        [numpy_helper.from_array(np.ones(3, np.float32), "bias"), numpy_helper.from_array(np.array([1, 3, 1, 1], np.int64), "target")],
    )
    dynamic = make_batch_dynamic(model)
    assert not any("__dynamic_batch" in i.name for i in dynamic.graph.initializer)
    x = RNG.standard_normal((3, 3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(_run(dynamic, {"x": x})["y"], x + 1)
