"""The forward model made ready for the backward pass: a copy with every node named, upgraded
to opset ``MIN_OPSET`` (rules need ``ScatterElements`` with ``reduction="add"`` and axes-as-input
reductions, and one form per op keeps them short), and the element types and static shapes of its
tensors that rules bake into the backward graph."""

from __future__ import annotations

import logging

import onnx
from onnx import helper, version_converter

from convscope.errors import Unimplemented, UnsupportedOp

from .emitter import TensorInfo

logger = logging.getLogger(__name__)

MIN_OPSET = 18
DEFAULT_DOMAINS = ("", "ai.onnx")


def prepared(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with every node named and the default opset at least ``MIN_OPSET``."""
    work = onnx.ModelProto()
    work.CopyFrom(model)
    _name_unnamed_nodes(work.graph)
    work = _upgrade(work)
    _name_unnamed_nodes(work.graph)  # nodes the converter inserted
    return work


def _name_unnamed_nodes(graph: onnx.GraphProto) -> None:
    """Give nameless nodes a stable "<op>#<index>" name so errors can point at them."""
    for index, node in enumerate(graph.node):
        if not node.name:
            node.name = f"{node.op_type}#{index}"


def _default_opset(model: onnx.ModelProto) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), None)


def _upgrade(model: onnx.ModelProto) -> onnx.ModelProto:
    opset = _default_opset(model)
    if opset is None:
        model.opset_import.append(helper.make_opsetid("", MIN_OPSET))
        return model
    if opset >= MIN_OPSET:
        return model
    try:
        return version_converter.convert_version(model, MIN_OPSET)
    except Exception as exc:  # the converter reports every failure as a bare C++ assertion
        for node in model.graph.node:
            if node.domain in DEFAULT_DOMAINS and not onnx.defs.has(node.op_type):
                raise UnsupportedOp(node.op_type, node.name, "not an ONNX operator") from exc
        raise Unimplemented(
            f"the backward graph needs opset {MIN_OPSET}; upgrading this model from opset {opset} failed"
        ) from exc


def tensor_infos(model: onnx.ModelProto) -> dict[str, TensorInfo]:
    """Element types and static shapes of the model's tensors, as far as they are known.

    Sizes are inferred from the inputs and the ops alone: annotations an exporter or an
    editing tool left in ``value_info`` or on the outputs may describe sizes the model no
    longer has (a 112×112 map after the input was made dynamic), and rules bake static
    sizes into the backward graph.  The annotations still give ranks and element types
    where inference from the ops stops, with their sizes dropped.
    """
    derived = _inferred(model, annotations=False)
    graph = model.graph
    described = [name for node in graph.node for name in node.output if name] + [
        vi.name for vi in (*graph.value_info, *graph.output)
    ]
    if all(name in derived and derived[name].shape is not None for name in described):
        return derived  # nothing left for the annotations to tell (the usual case): skip that pass
    for name, info in _inferred(model, annotations=True).items():
        known = derived.get(name)
        if known is None or known.shape is None:
            rank_only = None if info.shape is None else (None,) * len(info.shape)
            derived[name] = TensorInfo((known and known.elem_type) or info.elem_type, rank_only)
    return derived


def _inferred(model: onnx.ModelProto, *, annotations: bool) -> dict[str, TensorInfo]:
    if not annotations:
        bare = onnx.ModelProto()
        bare.CopyFrom(model)
        del bare.graph.value_info[:]
        for output in bare.graph.output:
            if output.type.HasField("tensor_type"):
                output.type.tensor_type.ClearField("shape")
        model = bare
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=not annotations)
    except Exception:  # partial information is fine: rules fall back to run-time shapes
        logger.warning("shape inference failed; the backward graph uses run-time shapes", exc_info=True)
        inferred = model
    graph = inferred.graph
    infos: dict[str, TensorInfo] = {}
    for vi in (*graph.input, *graph.output, *graph.value_info):
        tensor = vi.type.tensor_type
        shape = None
        if tensor.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param or None for d in tensor.shape.dim)
        infos[vi.name] = TensorInfo(tensor.elem_type, shape)
    for init in graph.initializer:
        infos[init.name] = TensorInfo(init.data_type, tuple(init.dims))
    return infos
