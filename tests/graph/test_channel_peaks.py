"""Per-channel peaks computed in the graph vs numpy's max |x| over each sample's channel."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from convscope.graph.channel_peaks import add_channel_peaks, peaks_name, peaks_source
from convscope.runtime.graphs import ExposedGraph, PlainGraph, graph_for


def _model(clip_low: float) -> onnx.ModelProto:
    """x [N, 3, 5, 4] → LeakyRelu ("map", negative values stay) → Clip from ``clip_low``
    ("clipped") → spatial mean → Flatten → Relu ("vector", [N, 3])."""
    nodes = [
        helper.make_node("LeakyRelu", ["x"], ["map"], alpha=0.1),
        helper.make_node("Clip", ["map", "low", "high"], ["clipped"]),
        helper.make_node("GlobalAveragePool", ["clipped"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Relu", ["flat"], ["vector"]),
    ]
    bounds = [
        helper.make_tensor("low", onnx.TensorProto.FLOAT, [], [clip_low]),
        helper.make_tensor("high", onnx.TensorProto.FLOAT, [], [6.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "peaks",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 5, 4])],
        [helper.make_tensor_value_info("vector", onnx.TensorProto.FLOAT, ["N", 3])],
        initializer=bounds,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("clip_low", [0.0, -0.05])  # a Clip from 0 is pooled as is, one from below 0 through Abs
def test_peaks_are_the_max_absolute_value_per_sample_and_channel(clip_low: float) -> None:
    x = np.random.default_rng(0).normal(size=(4, 3, 5, 4)).astype(np.float32)
    x[1, 2] = 0  # a dead channel: its peak is exactly zero
    x[3, 0] = -2  # negative everywhere: alive in "map" (and in "clipped" when it keeps negatives)
    model = add_channel_peaks(_model(clip_low), ["map", "clipped", "vector"])
    ops = [node.op_type for node in model.graph.node if node.name.startswith(peaks_name("clipped"))]
    assert ops == (["GlobalMaxPool", "Flatten"] if clip_low >= 0 else ["Abs", "GlobalMaxPool", "Flatten"])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [peaks_name("map"), peaks_name("clipped"), peaks_name("vector")]
    peaks = dict(zip(names, session.run(names, {"x": x})))
    leaky = np.where(x > 0, x, np.float32(0.1) * x)
    clipped = np.clip(leaky, np.float32(clip_low), 6)
    expected = {
        "map": np.abs(leaky).reshape(4, 3, -1).max(axis=2),
        "clipped": np.abs(clipped).reshape(4, 3, -1).max(axis=2),
        "vector": np.maximum(clipped.mean(axis=(2, 3)), 0),
    }
    for tensor, values in expected.items():
        np.testing.assert_allclose(peaks[peaks_name(tensor)], values, rtol=1e-6, atol=1e-7, err_msg=tensor)
    assert peaks[peaks_name("map")][1, 2] == 0 and (np.delete(peaks[peaks_name("map")].ravel(), 5) > 0).all()
    assert (peaks[peaks_name("clipped")][3, 0] > 0) == (clip_low < 0)


def test_graph_for_computes_peaks_in_the_graph_and_names_them_apart_from_tensors() -> None:
    assert peaks_source(peaks_name("conv1")) == "conv1" and peaks_source("conv1") is None
    assert graph_for({peaks_name("a"), "y"}, {"y"}) == ExposedGraph(frozenset(), frozenset({"a"}))
    assert graph_for({peaks_name("a"), "b"}, {"y"}) == ExposedGraph(frozenset({"b"}), frozenset({"a"}))
    assert graph_for({"y"}, {"y"}) == PlainGraph()


def _conv_chain(layers: int, channels: int = 16) -> onnx.ModelProto:
    """x [N, 16, 12, 12] → (3×3 Conv → Relu "relu{i}") × layers: convolutions onnxruntime runs in its blocked layout."""
    rng = np.random.default_rng(1)
    nodes, weights, source = [], [], "x"
    for index in range(layers):
        weights.append(
            onnx.numpy_helper.from_array(rng.normal(size=(channels, channels, 3, 3)).astype(np.float32) * 0.1, f"w{index}")
        )
        nodes.append(helper.make_node("Conv", [source, f"w{index}"], [f"conv{index}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"conv{index}"], [f"relu{index}"]))
        source = f"relu{index}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", channels, 12, 12])],
        [helper.make_tensor_value_info(source, onnx.TensorProto.FLOAT, ["N", channels, 12, 12])],
        initializer=weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_onnxruntime_computes_each_peak_before_the_next_layer(tmp_path) -> None:
    """Left to its own order, onnxruntime ran every peak after the last convolution, keeping every
    rectifier's output alive until then; the order chain makes each peak run while it is fresh."""
    layers = 4
    model = add_channel_peaks(_conv_chain(layers), [f"relu{index}" for index in range(layers)])
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).normal(size=(2, 16, 12, 12)).astype(np.float32)
    names = [peaks_name(f"relu{index}") for index in range(layers)]
    peaks = session.run(names, {"x": x})
    events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [
        event["args"]["op_name"] for event in events if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")
    ]
    convolutions = [position for position, op in enumerate(kernels) if op == "Conv"]
    pools = [position for position, op in enumerate(kernels) if op == "GlobalMaxPool"]
    assert len(convolutions) == len(pools) == layers, kernels
    assert all(conv < pool < next_conv for conv, pool, next_conv in zip(convolutions, pools, convolutions[1:])), kernels
    plain = ort.InferenceSession(_conv_chain(layers).SerializeToString(), providers=["CPUExecutionProvider"])
    relu = plain.run(None, {"x": x})[0]
    np.testing.assert_allclose(peaks[-1], relu.reshape(2, 16, -1).max(axis=2), rtol=1e-6)
