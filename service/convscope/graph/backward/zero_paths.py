"""Why a gradient is zero: the nodes where every path from the input to the score stops.

The backward pass differentiates only along differentiable edges (builder), so a score
that depends on the input solely through Round, Floor, comparisons, ArgMax, TopK indices or
casts to integers gets a gradient of zero, which is right (those ops' derivative is zero
almost everywhere) but looks like a bug.  These are the nodes to name when that happens.
"""

from __future__ import annotations

import onnx

from .builder import _differentiated_path
from .prepare import prepared, tensor_infos

# They pass on the input's size, not its values: a path through them carries no value to lose.
_SIZE_OPS = frozenset({"Shape", "Size", "ConstantOfShape", "EyeLike"})


def gradient_blockers(model: onnx.ModelProto, source: str, score: str) -> list[onnx.NodeProto]:
    """Nodes that take a value depending differentiably on ``source`` and pass on only values
    without a gradient, on the way to ``score``; empty when a differentiable path exists or
    ``score`` does not depend on ``source`` at all."""
    work = prepared(model)
    nodes = list(work.graph.node)
    _, active = _differentiated_path(nodes, {source}, [score], tensor_infos(work))
    if score in active:
        return []
    feeds_score = {score}
    for node in reversed(nodes):
        if any(o in feeds_score for o in node.output):
            feeds_score.update(i for i in node.input if i)
    if source not in feeds_score:
        return []
    return [
        node
        for node in nodes
        if node.op_type not in _SIZE_OPS
        and any(i in active for i in node.input)
        and not any(o in active for o in node.output)
        and any(o in feeds_score for o in node.output)
    ]
