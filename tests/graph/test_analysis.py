"""graph/analysis.py: which tensors are data (what a layer table lists)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from convscope.graph.analysis import data_tensors
from tests.graph.tiny_models import model_of


def test_data_tensors_skip_shape_arithmetic_and_constants():
    model = model_of(
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
