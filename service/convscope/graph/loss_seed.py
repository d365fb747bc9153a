"""Seeds made inside the backward graph from the forward value they differentiate.

``build_backward`` takes the seed dL/dΦ of a tensor Φ as a graph input.  For a loss that is
linear in Φ (a class score, a unit's mean) the caller knows the seed before the run; for the
losses the optimization methods use it depends on Φ(x) itself — cross-entropy's
softmax(z) − onehot, the code-matching residual 2(Φ − Φ₀)/‖Φ₀‖².  This pass replaces the seed
input by nodes that compute it from Φ in the same graph, so every optimization step is one
onnxruntime run (a forward run to learn Φ, then a backward run, would recompute the forward).
"""

from __future__ import annotations

import onnx
from onnx import helper

from convscope.graph.backward import seed_input_name
from convscope.graph.common import BATCH_DIM

SEED_RULES = ("given", "cross_entropy", "residual")


def rule_input_names(tensor: str, rule: str) -> tuple[str, ...]:
    """The graph inputs a rule adds (each batch-first, fed per step by the caller):

    - ``given``: the seed itself (``seed_input_name(tensor)``);
    - ``cross_entropy``: a one-hot [N, C] of the label; seed = softmax(Φ) − onehot, the
      gradient of the cross-entropy of the logits Φ;
    - ``residual``: a reference Φ₀ shaped like Φ and a per-sample weight w [N, 1, …];
      seed = w · (Φ − Φ₀), the gradient of w/2 · ‖Φ − Φ₀‖².
    """
    seed = seed_input_name(tensor)
    if rule == "given":
        return (seed,)
    if rule == "cross_entropy":
        return (f"{seed}_onehot",)
    if rule == "residual":
        return (f"{seed}_reference", f"{seed}_weight")
    raise ValueError(f"unknown seed rule {rule!r}; known: {SEED_RULES}")


def seed_from_forward(backward: onnx.ModelProto, tensor: str, rule: str) -> onnx.ModelProto:
    """``backward`` (a ``build_backward`` graph seeded at ``tensor``) with its seed input
    computed by ``rule`` from ``tensor`` and the rule's inputs (``rule_input_names``)."""
    names = rule_input_names(tensor, rule)
    if rule == "given":
        return backward
    model = onnx.ModelProto()
    model.CopyFrom(backward)
    graph = model.graph
    seed = seed_input_name(tensor)
    (seed_info,) = [i for i in graph.input if i.name == seed]
    if rule == "cross_entropy":
        (onehot,) = names
        probabilities = f"{seed}_softmax"
        nodes = [
            helper.make_node("Softmax", [tensor], [probabilities], name=f"{seed}/Softmax", axis=-1),
            helper.make_node("Sub", [probabilities, onehot], [seed], name=f"{seed}/Sub"),
        ]
        added = [_like(onehot, seed_info)]
    else:
        reference, weight = names
        difference = f"{seed}_difference"
        nodes = [
            helper.make_node("Sub", [tensor, reference], [difference], name=f"{seed}/Sub"),
            helper.make_node("Mul", [difference, weight], [seed], name=f"{seed}/Mul"),
        ]
        rank = len(seed_info.type.tensor_type.shape.dim)
        added = [
            _like(reference, seed_info),
            helper.make_tensor_value_info(weight, seed_info.type.tensor_type.elem_type, [BATCH_DIM, *[1] * (rank - 1)]),
        ]
    # The seed's first consumer is a backward node, after every forward node (Φ included).
    first = next(i for i, node in enumerate(graph.node) if seed in node.input)
    for offset, node in enumerate(nodes):
        graph.node.insert(first + offset, node)
    kept = [i for i in graph.input if i.name != seed]
    del graph.input[:]
    graph.input.extend([*kept, *added])
    return model


def _like(name: str, info: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    copy = onnx.ValueInfoProto()
    copy.CopyFrom(info)
    copy.name = name
    return copy
