"""Passes: the sub-models of incremental inference (plans come from ``graph/incremental/paths.py``).

* :func:`stage_model` — the nodes of one stage, to run on crops of its source tensor: the
  graph's own nodes, with auto_pad turned into the explicit pads it means on the whole map.
* :func:`tail_model` — the graph from a cut tensor to the scored output.

Both take a model and return a new one; neither runs anything.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import helper

from convscope.graph.analysis import runtime_inputs
from convscope.graph.common import BATCH_DIM
from convscope.graph.incremental.paths import WINDOW_OPS
from convscope.graph.incremental.stages import StagePlan

Shape = list[int | str]


def _cut(
    model: onnx.ModelProto,
    source: tuple[str, Shape],
    output: tuple[str, Shape | None],
    edit: Callable[[gs.Graph], None] | None = None,
) -> onnx.ModelProto:
    """The part of ``model`` that computes the ``output`` (name, shape or None to keep the
    model's) from the tensor ``source`` (name, shape): graphsurgeon drops every node the output
    does not need, subgraphs included. ``edit(graph)`` may change nodes first (they are in the
    model's order)."""
    graph = gs.import_onnx(model)
    if edit is not None:
        edit(graph)
    tensors = graph.tensors()
    start, end = tensors[source[0]], tensors[output[0]]
    start.inputs.clear()
    start.to_variable(dtype=_elem_dtype(model), shape=source[1])
    end.to_variable(dtype=end.dtype or _elem_dtype(model), shape=output[1] if output[1] is not None else end.shape)
    graph.inputs, graph.outputs = [start], [end]
    graph.cleanup()
    unfed = {
        t.name for t in graph.tensors().values() if isinstance(t, gs.Variable) and t.name and not t.inputs and t is not start
    }
    if unfed:
        raise ValueError(f"{output[0]!r} depends on {sorted(unfed)[:3]} other than through {source[0]!r}")
    cut = gs.export_onnx(graph)
    cut.ir_version = model.ir_version  # graphsurgeon stamps the newest, which onnxruntime may refuse
    return cut


def _elem_dtype(model: onnx.ModelProto) -> np.dtype:
    inputs = runtime_inputs(model.graph)
    return helper.tensor_dtype_to_np_dtype(inputs[0].type.tensor_type.elem_type if inputs else onnx.TensorProto.FLOAT)


def stage_model(model: onnx.ModelProto, plan: StagePlan) -> onnx.ModelProto:
    """The nodes from ``plan.source`` to ``plan.target``, unchanged but for explicit pads (auto_pad
    resolved for the whole map, so that crops pad as the map does), taking crops of the source."""

    def explicit_pads(graph: gs.Graph) -> None:
        for index, pads in plan.pads:
            node = graph.nodes[index]
            if node.op in WINDOW_OPS:
                node.attrs.pop("auto_pad", None)
                node.attrs["pads"] = list(pads)

    return _cut(
        model,
        (plan.source, [BATCH_DIM, plan.source_channels, *plan.source_size]),
        (plan.target, [BATCH_DIM, plan.target_channels, *plan.target_size]),
        explicit_pads,
    )


def tail_model(model: onnx.ModelProto, start: str, output: str, shape: tuple[int, int, int]) -> onnx.ModelProto:
    """The part of ``model`` that computes ``output`` from the tensor ``start`` ([N, *shape])."""
    return _cut(model, (start, [BATCH_DIM, *shape]), (output, None))
