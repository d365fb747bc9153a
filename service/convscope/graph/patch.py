"""Passes: the sub-models of incremental inference (plans come from ``graph/regions.py``).

* :func:`stage_model` — the nodes of one stage, to run on crops of its source tensor: the
  graph's own nodes, with auto_pad turned into the explicit pads it means on the whole map.
* :func:`tail_model` — the graph from a cut tensor to the scored output.

Both take a model and return a new one; neither runs anything.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx
from onnx import TensorProto, helper

from convscope.graph.analysis import initializer_names, producers, runtime_inputs
from convscope.graph.regions import WINDOW_OPS, StagePlan

BATCH_DIM = "batch"


def _subgraph_names(node: onnx.NodeProto) -> set[str]:
    """Outer-scope names that subgraphs of ``node`` (If, Loop, Scan) read."""
    names: set[str] = set()
    for attr in node.attribute:
        for graph in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            for inner in graph.node:
                names.update(name for name in inner.input if name)
                names |= _subgraph_names(inner)
    return names


def _support(graph: onnx.GraphProto, names: Iterable[str], stop: set[str]) -> tuple[list[int], set[str]]:
    """Indices of the nodes that compute ``names`` (walking back, not past ``stop``) and the
    initializers they read."""
    made_by = producers(graph)
    initializers = initializer_names(graph)
    nodes: set[int] = set()
    used: set[str] = set()
    pending = list(names)
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if not name or name in seen or name in stop:
            continue
        seen.add(name)
        if name in initializers:
            used.add(name)
            continue
        if name not in made_by:
            continue
        index, node = made_by[name]
        if index not in nodes:
            nodes.add(index)
            pending.extend(node.input)
            pending.extend(_subgraph_names(node))
    return sorted(nodes), used


def _new_model(
    model: onnx.ModelProto,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: set[str],
    name: str,
) -> onnx.ModelProto:
    graph = model.graph
    kept = [init for init in graph.initializer if init.name in initializers]
    sparse = [init for init in graph.sparse_initializer if init.values.name in initializers]
    new_graph = helper.make_graph(nodes, name, inputs, outputs, initializer=kept)
    new_graph.sparse_initializer.extend(sparse)
    new = helper.make_model(new_graph, opset_imports=list(model.opset_import))
    new.ir_version = model.ir_version
    new.functions.extend(model.functions)
    return new


def _elem_type(model: onnx.ModelProto) -> int:
    inputs = runtime_inputs(model.graph)
    return inputs[0].type.tensor_type.elem_type if inputs else TensorProto.FLOAT


def stage_model(model: onnx.ModelProto, plan: StagePlan) -> onnx.ModelProto:
    """The nodes from ``plan.source`` to ``plan.target``, unchanged but for explicit pads (auto_pad
    resolved for the whole map, so that crops pad as the map does), taking crops of the source."""
    graph = model.graph
    elem = _elem_type(model)
    pads = dict(plan.pads)
    nodes: list[onnx.NodeProto] = []
    for index in plan.nodes:
        node = onnx.NodeProto()
        node.CopyFrom(graph.node[index])
        if node.op_type in WINDOW_OPS:
            kept = [attr for attr in node.attribute if attr.name not in ("pads", "auto_pad")]
            del node.attribute[:]
            node.attribute.extend(kept)
            node.attribute.append(helper.make_attribute("pads", list(pads[index])))
        nodes.append(node)
    support, initializers = _support(graph, [name for index in plan.nodes for name in graph.node[index].input], {plan.source})
    own = set(plan.nodes)
    prefix = [graph.node[index] for index in support if index not in own]
    inputs = [helper.make_tensor_value_info(plan.source, elem, [BATCH_DIM, plan.source_channels, *plan.source_size])]
    outputs = [helper.make_tensor_value_info(plan.target, elem, [BATCH_DIM, plan.target_channels, *plan.target_size])]
    return _new_model(model, prefix + nodes, inputs, outputs, initializers, "occlusion_stage")


def tail_model(model: onnx.ModelProto, start: str, output: str, shape: tuple[int, int, int]) -> onnx.ModelProto:
    """The part of ``model`` that computes ``output`` from the tensor ``start`` ([N, *shape])."""
    graph = model.graph
    elem = _elem_type(model)
    support, initializers = _support(graph, [output], {start})
    inputs_needed = {value.name for value in runtime_inputs(graph)}
    for index in support:
        if inputs_needed & set(graph.node[index].input):
            raise ValueError(f"{output!r} depends on the model input other than through {start!r}")
    declared = {value.name: value for value in graph.output}
    out = onnx.ValueInfoProto()
    if output in declared:
        out.CopyFrom(declared[output])
    else:
        out.name = output
    inputs = [helper.make_tensor_value_info(start, elem, [BATCH_DIM, *shape])]
    return _new_model(model, [graph.node[index] for index in support], inputs, [out], initializers, "occlusion_tail")
