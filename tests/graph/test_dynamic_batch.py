"""graph/dynamic_batch.py: a batch of one baked into Reshape targets made symbolic."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from convscope.graph.dynamic_batch import make_batch_dynamic
from tests.graph.tiny_models import RNG, conv_relu_reshape, model_of, run


@pytest.mark.parametrize("variant", [{}, {"weights_in_constant": True}, {"initializers_as_inputs": True}])
@pytest.mark.parametrize("batch_dim", [1, "N"])
def test_dynamic_batch_rewrites_baked_reshape(batch_dim, variant):
    model = conv_relu_reshape(batch_dim, **variant)
    dynamic = make_batch_dynamic(model)
    pair = RNG.standard_normal((2, 3, 8, 8)).astype(np.float32)
    batched = run(dynamic, {"x": pair})["logits"]
    singles = np.concatenate([run(model, {"x": pair[i : i + 1]})["logits"] for i in range(2)])
    np.testing.assert_allclose(batched, singles, rtol=1e-5, atol=1e-5)
    target = next(i for i in dynamic.graph.initializer if i.name.startswith("target__dynamic_batch"))
    assert numpy_helper.to_array(target).tolist() == [0, -1]
    assert dynamic.graph.input[0].type.tensor_type.shape.dim[0].dim_param


def test_dynamic_batch_leaves_constant_reshapes_alone():
    model = model_of(
        [
            helper.make_node("Reshape", ["bias", "target"], ["bias4"]),
            helper.make_node("Add", ["x", "bias4"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2, 2])],
        [
            numpy_helper.from_array(np.ones(3, np.float32), "bias"),
            numpy_helper.from_array(np.array([1, 3, 1, 1], np.int64), "target"),
        ],
    )
    dynamic = make_batch_dynamic(model)
    assert not any("__dynamic_batch" in i.name for i in dynamic.graph.initializer)
    x = RNG.standard_normal((3, 3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(run(dynamic, {"x": x})["y"], x + 1)
