"""Filters: weights found however the exporter stored them, drawn, and scored for smoothness."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convscope.errors import InvalidArgument, NotFound
from convscope.methods.filters import conv_weights, filters, smoothness
from convscope.render.images import filter_grid

RNG = np.random.default_rng(0)
WEIGHTS = RNG.standard_normal((4, 3, 5, 5)).astype(np.float32)


def conv_model(storage: str) -> onnx.ModelProto:
    nodes, initializers = [], []
    if storage == "initializer":
        initializers.append(numpy_helper.from_array(WEIGHTS, "w"))
    elif storage == "identity":  # TorchScript's shared weights
        initializers.append(numpy_helper.from_array(WEIGHTS, "w_raw"))
        nodes.append(helper.make_node("Identity", ["w_raw"], ["w"]))
    else:  # Paddle's Constant nodes
        nodes.append(helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(WEIGHTS)))
    nodes.append(helper.make_node("Conv", ["x", "w"], ["y"], name="conv1"))
    nodes.append(helper.make_node("Relu", ["y"], ["z"], name="relu1"))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4, 4, 4])],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("storage", ["initializer", "identity", "constant"])
@pytest.mark.parametrize("layer", ["conv1", "y"])
def test_weights_found_by_node_or_tensor_name(storage, layer):
    node, weights = conv_weights(conv_model(storage), layer)
    assert node == "conv1"
    np.testing.assert_array_equal(weights, WEIGHTS)


def test_unknown_or_non_conv_layer():
    with pytest.raises(NotFound, match="conv1"):
        conv_weights(conv_model("initializer"), "nope")
    with pytest.raises(InvalidArgument, match="Relu"):
        conv_weights(conv_model("initializer"), "relu1")


def test_smoothness_separates_noise_from_smooth_filters():
    y, x = np.mgrid[-3:4, -3:4]
    gaussian = np.exp(-(x**2 + y**2) / 4.0)
    smooth = np.stack([np.stack([gaussian * s for s in (1.0, 0.5, -0.3)]) for _ in range(8)])
    noise = RNG.standard_normal((8, 3, 7, 7))
    assert smoothness(smooth).min() > 0.9
    assert smoothness(noise).max() < 0.5
    assert np.isnan(smoothness(np.ones((4, 2, 1, 1)))).all(), "1×1 kernels have no spatial spectrum"


def test_filter_grid_layouts():
    colour = filter_grid(RNG.standard_normal((16, 3, 3, 3)))
    grey = filter_grid(RNG.standard_normal((4, 6, 3, 3)))
    assert colour.ndim == 3 and colour.shape[2] == 3
    # Deeper layers: one row per filter, one grey tile per input channel.
    assert (grey[..., 0] == grey[..., 1]).all()
    tile_edge = grey.shape[0] // 4
    assert abs(grey.shape[1] / 6 - tile_edge) <= 1
    # Depthwise (one input channel per filter): a square grid, not one column of 32 tiles.
    depthwise = filter_grid(RNG.standard_normal((32, 1, 3, 3)))
    assert 0.7 < depthwise.shape[0] / depthwise.shape[1] < 1.5


def test_filters_over_rpc_match_the_initializer(client):
    model = conv_model("identity")
    model.ir_version = 8
    info = client.upload_model(model.SerializeToString(), name="one-conv")
    result = client.filters(info.id, "conv1")
    np.testing.assert_array_equal(result.weights, WEIGHTS)
    np.testing.assert_allclose(result.smoothness, smoothness(WEIGHTS), rtol=1e-6)
    assert result.png.startswith(b"\x89PNG")
    assert filters(model, "conv1").mean_smoothness == pytest.approx(result.mean_smoothness, rel=1e-6)
