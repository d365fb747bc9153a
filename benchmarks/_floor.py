"""The floor of incremental occlusion: recomputing only the changed region of every layer, at
onnxruntime's own measured throughput for those layers.

The graph is cut into segments at the cuts of its spatially local part (graph/incremental/paths.py: the
tensors every path to the output passes through), each segment ending just before a sliding-
window op so that onnxruntime's fusions (Conv + activation, Conv + Add) stay inside one segment;
the last segment runs from the last cut to the output.  Each segment is timed alone at batch 32
on whole maps (seconds per sample).  A box changes, in each layer, the rows × columns that
``changed_interval`` gives; the segment's share of its cost-model work (``ELEMENT_COST``,
multiply-adds) that lies in the changed region, times its measured time per sample, is what
recomputing only that region would cost if onnxruntime kept its whole-map throughput on it.
Summed over every box position, plus the tail in full, that is the floor: it ignores the crops'
halos, the gathers and splices, and onnxruntime's lower throughput on small maps — every cost an
incremental engine has to pay on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from benchmarks._common import median_seconds
from convscope.graph.analysis import data_tensors
from convscope.graph.dynamic_batch import make_batch_dynamic
from convscope.graph.incremental.paths import EarlyPath, changed_interval, early_path
from convscope.graph.incremental.stages import ELEMENT_COST
from convscope.graph.incremental.submodels import tail_model
from convscope.methods.occlusion_engine import Boxes
from convscope.runtime.providers import new_session

BATCH = 32


@dataclass(frozen=True)
class Segment:
    source: str
    target: str
    seconds_per_sample: float
    changed_shares: tuple[float, ...]  # per box grid: its share of the work, summed over the positions


def _probe_shapes(model: onnx.ModelProto, image: np.ndarray) -> dict[str, tuple[int, ...]]:
    """Every data tensor's batch-1 shape, from one run."""
    tensors = data_tensors(model.graph)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in tensors if name not in known)
    session = new_session(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {session.get_inputs()[0].name: image[None]})
    shapes = {name: tuple(int(d) for d in np.shape(value)) for name, value in zip(names, values)}
    shapes[session.get_inputs()[0].name] = (1, *image.shape)
    return shapes


def _boundaries(path: EarlyPath) -> list[str]:
    """Cuts followed by a sliding-window op (so each segment keeps its fusions together)."""
    kept = []
    for position, cut in enumerate(path.cuts):
        following = path.cuts[position + 1] if position + 1 < len(path.cuts) else None
        if following is not None:
            between = path.ancestors[following] - path.ancestors[cut]
            if all(path.nodes[i].axes is None for i in between):
                continue
        kept.append(cut)
    return kept


def _changed_share(path: EarlyPath, nodes: Sequence[int], rows: dict, cols: dict) -> float:
    """Σ over box positions of the share of the nodes' work inside the changed region."""
    changed = full = 0.0
    for index in nodes:
        item = path.nodes[index]
        height, width = path.sizes[item.output]
        weight = path.channels[item.output] * (item.macs + ELEMENT_COST)
        row_lo, row_hi = rows[item.output]
        col_lo, col_hi = cols[item.output]
        changed += weight * float((row_hi - row_lo).sum()) * float((col_hi - col_lo).sum())
        full += weight * height * width
    return changed / full if full else 0.0


def floor_segments(model_bytes: bytes, image: np.ndarray, output: str, grids: Sequence[Boxes]) -> tuple[list[Segment], float]:
    """The segments of the local part with their measured time and changed share per box grid,
    and the tail's seconds per sample."""
    model = make_batch_dynamic(onnx.load_from_string(model_bytes))
    input_name = model.graph.input[0].name
    shapes = _probe_shapes(model, image)
    path = early_path(model, input_name, output, shapes)
    changed = [(changed_interval(path, 0, boxes.y0, boxes.y1), changed_interval(path, 1, boxes.x0, boxes.x1)) for boxes in grids]
    segments = []
    source = input_name
    for target in _boundaries(path):
        nodes = sorted(path.ancestors[target] - path.ancestors[source])
        seconds = _seconds_per_sample(model, source, target, shapes[source][1:])
        segments.append(
            Segment(source, target, seconds, tuple(_changed_share(path, nodes, rows, cols) for rows, cols in changed))
        )
        source = target
    return segments, _seconds_per_sample(model, source, output, shapes[source][1:])


def _seconds_per_sample(model: onnx.ModelProto, source: str, target: str, shape: tuple[int, ...]) -> float:
    """onnxruntime's time per sample for the part of ``model`` from ``source`` to ``target``, at
    batch ``BATCH``."""
    segment = tail_model(model, source, target, shape)  # type: ignore[arg-type]
    session = new_session(segment.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal((BATCH, *shape)).astype(np.float32)}
    return median_seconds(lambda: session.run(None, feed), repeats=3, warmup=1) / BATCH


def floor_seconds(segments: Sequence[Segment], tail_seconds: float, grid: int, positions: int) -> float:
    """The floor for the ``grid``-th box grid of ``positions`` positions."""
    return sum(s.seconds_per_sample * s.changed_shares[grid] for s in segments) + tail_seconds * positions
