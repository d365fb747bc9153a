"""The ``backward`` pass: forward model → forward + vector-Jacobian-product model.

The result runs in one plain onnxruntime session: it takes the forward inputs plus
one seed gradient per seeded tensor (any loss becomes a seed) and returns the
gradient at every float input and at requested intermediates (Grad-CAM needs a conv
layer's).  onnxruntime-training's gradient builder is not an option: it emits
``com.microsoft`` ops that plain onnxruntime rejects.

Only the *differentiated path* gets rules: nodes that depend on a float input (or a
requested intermediate) through differentiable edges and feed a seed.  Weights in
initializers, ``Constant`` nodes, ``Identity`` over initializers and shape arithmetic
never lie on it.  A node on it without a rule is refused with ``UnsupportedOp``:
a missing gradient is never replaced by zeros.  Where no path exists at all, the
gradient *is* zero and the output says so.

The model is first prepared (``prepare.py``): upgraded to opset 18 with onnx's version
converter, and its tensors' types and static shapes inferred.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import onnx
from onnx import helper

from convscope.choices import parse
from convscope.errors import InvalidArgument, UnsupportedOp
from convscope.graph.analysis import producers
from convscope.graph.common import BATCH_DIM, constant_value, subgraph_reads
from convscope_client.choices import Rectifier, RectifierScope

from .emitter import FLOAT_TYPES, Emitter, TensorInfo
from .prepare import DEFAULT_DOMAINS, prepared, tensor_infos
from .rules import NONDIFFERENTIABLE, RULES, Options, Rule, Vjp

logger = logging.getLogger(__name__)

MAX_IR_VERSION = 13  # the newest onnxruntime 1.31 loads; onnx 1.23 stamps 14 by default


def seed_input_name(tensor: str) -> str:
    """Name of the graph input that carries the seed gradient for ``tensor``."""
    return f"{tensor}__seed"


def grad_output_name(tensor: str) -> str:
    """Name of the graph output holding the gradient with respect to ``tensor``."""
    return f"{tensor}__grad"


def build_backward(
    model: onnx.ModelProto,
    seeds: Sequence[str],
    *,
    wrt: Sequence[str] = (),
    keep: Sequence[str] = (),
    rectifier: Rectifier | str = Rectifier.PLAIN,
    rectifiers: RectifierScope | str = RectifierScope.ALL,
    top_target: bool = False,
) -> onnx.ModelProto:
    """Add a backward graph to (a copy of) ``model``.

    Args:
        model: the forward model; not modified.
        seeds: tensors (outputs or intermediates) that receive a seed gradient input
            ``seed_input_name(s)``; several seeds add up.
        wrt: intermediate tensors whose gradient is also returned (Grad-CAM).
        keep: forward tensors to return under their own names (e.g. the score).
        rectifier: ``"plain"`` gradients, ``"guided"`` backprop (Springenberg et al.
            2015: ``relu(dY)·(Y>0)`` at ReLUs) or ``"deconvnet"`` (Zeiler & Fergus
            2014: ``relu(dY)``).
        rectifiers: which units the rectifier applies to: ``"all"`` ReLU and
            Clip with min 0 (ReLU6), or ``"relu"`` ReLU only (Captum's convention).
        top_target: seed the (one) seed tensor in the graph itself, one-hot at each
            sample's top entry (the first on ties, as numpy's argmax), which is also
            returned as ``top_target_name(seed)`` (int64 [N]): the default target then
            costs no forward pass of its own.

    Returns:
        A new model whose inputs are the forward inputs (initializers excluded) and
        the seeds (none with ``top_target``), and whose outputs are ``keep`` and
        ``grad_output_name(t)`` for every float input and every ``wrt`` tensor.
    """
    options = Options(parse(Rectifier, rectifier), parse(RectifierScope, rectifiers))
    if not seeds:
        raise InvalidArgument("the backward graph needs at least one seed tensor")
    seeds, wrt, keep = _unique(seeds), _unique(wrt), _unique(keep)
    if top_target and len(seeds) != 1:
        raise InvalidArgument("a top-entry target seeds exactly one tensor")

    work = prepared(model)
    graph = work.graph
    infos = tensor_infos(work)
    initializers = {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
    inputs = {i.name: i for i in graph.input if i.name not in initializers}
    float_inputs = [name for name, i in inputs.items() if i.type.tensor_type.elem_type in FLOAT_TYPES]
    _check_tensors(graph, infos, initializers, seeds=seeds, wrt=wrt, keep=keep)

    path, active = _differentiated_path(graph.node, set(float_inputs) | set(wrt), seeds, infos)
    rules = [(node, _rule_or_refuse(node)) for node in path]

    taken = _all_names(graph)
    grad_of = [*float_inputs, *(t for t in wrt if t not in inputs)]
    reserved = {top_target_name(s) if top_target else seed_input_name(s) for s in seeds} | {grad_output_name(t) for t in grad_of}
    if reserved & taken:
        raise InvalidArgument(f"the model already has tensors named {sorted(reserved & taken)}")
    emitter = Emitter(infos, taken | reserved)
    grads = _Gradients(emitter)
    for s in seeds:
        grads.add(s, _top_entry_seed(emitter, s) if top_target else seed_input_name(s))
    initializer_protos, made_by = {t.name: t for t in graph.initializer}, producers(graph)

    def constants(name: str) -> np.ndarray | None:
        return constant_value(name, initializer_protos, made_by)

    for node, rule in reversed(rules):
        _differentiate(node, rule, grads, active, emitter, options, constants)

    emitter.scope = "bwd/outputs"
    outputs = [_batch_free(t, _info(infos, t)) for t in keep]
    for t in grad_of:
        declared = inputs[t].type if t in inputs else _batch_free(t, _info(infos, t)).type
        outputs.append(_export(emitter, grads, t, declared))
    if top_target:
        outputs.extend(helper.make_tensor_value_info(top_target_name(s), onnx.TensorProto.INT64, [BATCH_DIM]) for s in seeds)
    seed_inputs = [] if top_target else [_batch_free(seed_input_name(s), _info(infos, s)) for s in seeds]
    graph.initializer.extend(emitter.initializers)
    _rewire(graph, emitter.nodes, [*inputs.values(), *seed_inputs], outputs)
    declared = {vi.name for vi in (*graph.input, *graph.output, *graph.value_info)}
    graph.value_info.extend(grads.value_info(infos, declared))
    min_ir = helper.find_min_ir_version_for(list(work.opset_import), ignore_unknown=True)
    work.ir_version = min(max(work.ir_version, min_ir), MAX_IR_VERSION)
    logger.debug("backward graph: %d nodes on the path, %d nodes emitted", len(path), len(emitter.nodes))
    return work


# -- the requested tensors -------------------------------------------------------


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _info(infos: dict[str, TensorInfo], name: str) -> TensorInfo:
    return infos.get(name, TensorInfo(0, None))


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names = {vi.name for vi in (*graph.input, *graph.output, *graph.value_info)}
    names |= {t.name for t in graph.initializer}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    return names


def _check_tensors(
    graph: onnx.GraphProto,
    infos: dict[str, TensorInfo],
    initializers: set[str],
    *,
    seeds: list[str],
    wrt: list[str],
    keep: list[str],
) -> None:
    known = {i.name for i in graph.input} | initializers
    known |= {o for node in graph.node for o in node.output if o}
    for role, names in (("seed", seeds), ("wrt", wrt), ("keep", keep)):
        for name in names:
            if name not in known:
                raise InvalidArgument(f"{role} tensor {name!r} is not in the model")
            if role != "keep" and _info(infos, name).elem_type not in (0, *FLOAT_TYPES):
                raise InvalidArgument(f"{role} tensor {name!r} is not a float tensor")


# -- which nodes are differentiated ----------------------------------------------


def _rule(node: onnx.NodeProto) -> Rule | None:
    if node.domain not in DEFAULT_DOMAINS:
        return None
    return RULES.get(node.op_type)


def _rule_or_refuse(node: onnx.NodeProto) -> Rule:
    rule = _rule(node)
    if rule is None:
        why = (
            f"no gradient rule for custom domain {node.domain!r}"
            if node.domain not in DEFAULT_DOMAINS
            else "no gradient rule for this op"
        )
        raise UnsupportedOp(node.op_type, node.name, why)
    return rule


def _gradient_inputs(node: onnx.NodeProto) -> list[str]:
    """Inputs through which a gradient could flow into ``node``'s outputs."""
    if node.domain in DEFAULT_DOMAINS and node.op_type in NONDIFFERENTIABLE:
        return []
    rule = _rule(node)
    if rule is None:  # unknown: assume everything matters, so it is refused if on the path
        return [i for i in node.input if i] + sorted(subgraph_reads(node))
    positions = range(len(node.input)) if rule.inputs is None else rule.inputs
    return [node.input[i] for i in positions if i < len(node.input) and node.input[i]]


def _differentiated_path(
    nodes: Sequence[onnx.NodeProto], sources: set[str], seeds: list[str], infos: dict[str, TensorInfo]
) -> tuple[list[onnx.NodeProto], set[str]]:
    """Nodes between the sources and the seeds (in forward order), and the active tensors.

    A tensor is active if it is a float that depends on a source through
    differentiable edges; a node is on the path if one of its active outputs leads
    (again through differentiable edges) to a seed.
    """
    active = set(sources)
    for node in nodes:
        if any(i in active for i in _gradient_inputs(node)):
            # Without a rule, even an integer output may hide a float dependency
            # (QuantizeLinear → DequantizeLinear); keep it so the op is refused.
            known = _rule(node) is not None
            active.update(o for o in node.output if o and (not known or _info(infos, o).elem_type in (0, *FLOAT_TYPES)))
    needed = set(seeds) & active
    path = []
    for node in reversed(nodes):
        if not any(o in needed for o in node.output):
            continue
        reached = [i for i in _gradient_inputs(node) if i in active]
        if reached:
            path.append(node)
            needed.update(reached)
    path.reverse()
    return path, active


# -- the backward sweep ----------------------------------------------------------


class _Gradients:
    """Gradient contributions per tensor; fan-out adds them up with one Sum."""

    def __init__(self, emitter: Emitter) -> None:
        self._parts: dict[str, list[str]] = {}
        self._emitter = emitter
        self.shaped_like: dict[str, str] = {}
        """Each gradient tensor and the forward tensor whose shape it has."""

    def add(self, tensor: str, grad: str) -> None:
        self._parts.setdefault(tensor, []).append(grad)
        self.shaped_like.setdefault(grad, tensor)

    def total(self, tensor: str) -> str | None:
        parts = self._parts.get(tensor)
        if not parts:
            return None
        if len(parts) > 1:
            parts[:] = [self._emitter.op("Sum", *parts)]
            self.shaped_like.setdefault(parts[0], tensor)
        return parts[0]

    def value_info(self, infos: dict[str, TensorInfo], declared: set[str]) -> list[onnx.ValueInfoProto]:
        """Shapes of the gradient tensors: their forward tensors', batch symbol included.

        Shape inference loses the batch symbol at ops whose output size it cannot derive
        symbolically (Resize by scales, Reshape to −1).  onnxruntime then cannot prove two
        gradients the same shape and converts them out of its blocked layout and back
        around every elementwise op between convolutions; stated here, it keeps them.
        """
        shaped = []
        for grad, tensor in self.shaped_like.items():
            info = infos.get(tensor)
            if grad in declared or info is None or info.shape is None or not info.elem_type:
                continue
            # Inference's own "unk__k" names could collide with onnxruntime's: left unknown.
            dims = [None if d in (0, None) or (isinstance(d, str) and d.startswith("unk__")) else d for d in info.shape]
            shaped.append(helper.make_tensor_value_info(grad, info.elem_type, dims))
        return shaped


def _differentiate(
    node: onnx.NodeProto,
    rule: Rule,
    grads: _Gradients,
    active: set[str],
    emitter: Emitter,
    options: Options,
    constants: Callable[[str], np.ndarray | None],
) -> None:
    emitter.scope = f"bwd/{node.name}"
    differentiable = set(range(len(node.input)) if rule.inputs is None else rule.inputs)
    needs = [i in differentiable and name in active for i, name in enumerate(node.input)]
    dys = [grads.total(o) if o else None for o in node.output]
    handled = range(len(dys)) if rule.outputs is None else rule.outputs
    for k, g in enumerate(dys):
        if g is not None and k not in handled:
            raise UnsupportedOp(node.op_type, node.name, f"no gradient through output {k} ({node.output[k]!r})")
    vjp = Vjp(node, emitter, dys, needs, options, constants)
    result = rule.fn(vjp)
    for i, needed in enumerate(needs):
        if needed and i not in result:
            raise UnsupportedOp(
                node.op_type,
                node.name,
                f"no gradient with respect to input {i} ({node.input[i]!r}), which depends on the differentiated input",
            )
    for i, g in result.items():
        if needs[i]:
            grads.add(node.input[i], g)


def _export(emitter: Emitter, grads: _Gradients, tensor: str, type_: onnx.TypeProto) -> onnx.ValueInfoProto:
    """The gradient of ``tensor`` as a graph output (zeros where no path reaches it)."""
    g = grads.total(tensor) or emitter.zeros_like(tensor)
    name = grad_output_name(tensor)
    emitter.nodes.append(helper.make_node("Identity", [g], [name], name=emitter.fresh("Identity")))
    out = onnx.ValueInfoProto(name=name)
    out.type.CopyFrom(type_)
    return out


def _batch_free(name: str, info: TensorInfo) -> onnx.ValueInfoProto:
    """A value info with ``info``'s type and shape, the first (batch) dimension symbolic."""
    elem_type = info.elem_type or onnx.TensorProto.FLOAT
    if info.shape is None:
        return helper.make_tensor_value_info(name, elem_type, None)
    dims = list(info.shape)
    if dims and not isinstance(dims[0], str):
        dims[0] = BATCH_DIM
    return helper.make_tensor_value_info(name, elem_type, dims)


def _rewire(
    graph: onnx.GraphProto, nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
) -> None:
    graph.node.extend(nodes)
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.output[:]
    graph.output.extend(outputs)
    _prune(graph)


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes and initializers no output needs (the forward outputs may be gone)."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
            needed |= subgraph_reads(node)
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    initializers = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    value_info = [vi for vi in graph.value_info if vi.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(value_info)


def top_target_name(tensor: str) -> str:
    """Name of the graph output holding, per sample, the flat index of ``tensor``'s top entry."""
    return f"{tensor}__top"


def _top_entry_seed(e: Emitter, tensor: str) -> str:
    """One-hot at each sample's top entry of ``tensor``; the entry's flat index is also written
    to the graph output ``top_target_name(tensor)``."""
    flat = e.op("Reshape", tensor, e.ints([0, -1]))
    top = top_target_name(tensor)
    e.nodes.append(helper.make_node("ArgMax", [flat], [top], name=e.fresh("ArgMax"), axis=1, keepdims=0))
    one_hot = e.op("OneHot", top, e.shape(flat, 1, 2), e.scalar([0, 1], tensor), axis=-1)
    return e.reshape_like(one_hot, tensor)
