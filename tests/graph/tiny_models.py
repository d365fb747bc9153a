"""Tiny ONNX models built in code for the graph passes' tests, and a way to run them."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(0)


def model_of(nodes, inputs, outputs, initializers=(), opset=17, list_initializers_as_inputs=False):
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=list(initializers))
    if list_initializers_as_inputs:  # what pre-IR-4 exporters did
        graph.input.extend(helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def run(model, feeds, outputs=None):
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
    return model_of(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch_dim, 5])],
        initializers,
        list_initializers_as_inputs=initializers_as_inputs,
    )
