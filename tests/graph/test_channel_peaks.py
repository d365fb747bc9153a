"""Per-channel peaks computed in the graph vs numpy's max |x| over each sample's channel."""

from __future__ import annotations

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
