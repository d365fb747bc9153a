"""Pass: make the batch dimension symbolic, including batch sizes baked into Reshape targets."""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import numpy_helper

from convscope.graph.analysis import constant_tensors, producers, runtime_inputs
from convscope.graph.common import BATCH_DIM, constant_value

log = logging.getLogger(__name__)


def make_batch_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of ``model`` whose first input/output dimension is symbolic.

    Exporters often bake the example's batch size into ``Reshape`` targets (``[1, -1]`` before
    a classifier). Those constants are rewritten: the batch entry becomes ``0`` (copy the
    input's batch) when the target already has a ``-1``, else ``-1``. This is a heuristic — a
    Reshape that merges the batch into other axes would be wrong — so the store checks the
    result (batch of 2 == two batches of 1, batch 1 unchanged) before trusting it.
    """
    dynamic = onnx.ModelProto()
    dynamic.CopyFrom(model)
    graph = dynamic.graph
    inputs = runtime_inputs(graph)
    baked = {dim.dim_value for value in inputs for dim in value.type.tensor_type.shape.dim[:1] if dim.HasField("dim_value")}
    # A symbolic batch tells us nothing about what was baked in; exporters trace with batch 1.
    batch_sizes = baked or {1}
    for value in [*inputs, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM
    # Intermediate shape annotations carry the old batch; onnxruntime re-infers them.
    del graph.value_info[:]
    _rewrite_reshape_targets(graph, batch_sizes)
    return dynamic


def _rewrite_reshape_targets(graph: onnx.GraphProto, batch_sizes: set[int]) -> None:
    constants = constant_tensors(graph)
    made_by = producers(graph)
    initializers = {init.name: init for init in graph.initializer}
    for index, node in enumerate(graph.node):
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[0] in constants:
            continue
        if any(attr.name == "allowzero" and attr.i == 1 for attr in node.attribute):
            continue
        target = constant_value(node.input[1], initializers, made_by)
        if target is None or target.ndim != 1 or target.size == 0 or int(target[0]) not in batch_sizes:
            continue
        rewritten = target.copy()
        rewritten[0] = 0 if -1 in target[1:] else -1
        name = f"{node.input[1]}__dynamic_batch_{index}"
        graph.initializer.append(numpy_helper.from_array(rewritten.astype(np.int64), name))
        log.debug("Reshape %s: target %s -> %s", node.name or index, target.tolist(), rewritten.tolist())
        node.input[1] = name
