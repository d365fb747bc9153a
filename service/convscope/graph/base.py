"""The base graph every session of a model starts from."""

from __future__ import annotations

import onnx

from convscope.graph.analysis import initializer_names
from convscope.graph.dynamic_batch import make_batch_dynamic


def drop_initializer_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Old exporters list weights in graph.input too; onnxruntime then treats them as
    overridable inputs and will not constant-fold them. They are constants: unlist them."""
    constants = initializer_names(model.graph)
    if not any(value.name in constants for value in model.graph.input):
        return model
    cleaned = onnx.ModelProto()
    cleaned.CopyFrom(model)
    kept = [value for value in cleaned.graph.input if value.name not in constants]
    del cleaned.graph.input[:]
    cleaned.graph.input.extend(kept)
    return cleaned


def base_graph(model: onnx.ModelProto, *, dynamic_batch: bool) -> onnx.ModelProto:
    """``model`` with weights as constants and, where the store verified it, a symbolic batch."""
    cleaned = drop_initializer_inputs(model)
    return make_batch_dynamic(cleaned) if dynamic_batch else cleaned
