"""Pass: make chosen intermediate tensors graph outputs, so one run returns them."""

from __future__ import annotations

from collections.abc import Iterable

import onnx

from convscope.errors import NotFound
from convscope.graph.analysis import data_tensors


def expose(model: onnx.ModelProto, tensors: Iterable[str] | None = None) -> onnx.ModelProto:
    """Return a copy of ``model`` whose outputs also include ``tensors`` (all data tensors if None).

    Only what is asked for is exposed: an exposed tensor stops onnxruntime from fusing the node
    that makes it (Conv+Clip, say), so exposing everything makes a run markedly slower.
    Output types are left for onnxruntime to infer: exported graphs often lack them.
    """
    graph = model.graph
    available = {name for node in graph.node for name in node.output if name}
    wanted = data_tensors(graph) if tensors is None else list(dict.fromkeys(tensors))
    missing = [name for name in wanted if name not in available]
    if missing:
        raise NotFound(f"the graph has no tensor(s) {missing[:5]}")
    already = {output.name for output in graph.output}
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    for name in wanted:
        if name not in already:
            exposed.graph.output.append(onnx.ValueInfoProto(name=name))
            already.add(name)
    return exposed
