"""Incremental inference for occlusion maps (Nakandala et al., SIGMOD 2019).

Every occluded copy of an image differs from the image only inside the occluder's box, so the
early, spatially local layers change only inside the box's receptive-field footprint.  This
engine runs the unoccluded image once and keeps the activations of a few *cut* tensors; for each
occluder position it then recomputes, stage by stage (input → cut → … → cut), only a crop of
each cut around the change — from a crop of the previous cut into which the window recomputed
before is pasted — and passes on the window of it that is exact and covers the change; the last
window is spliced into the cached cut tensor and the rest of the graph runs batched on whole
maps.  Results are exact: stages run the graph's own nodes with its own padding on crops that
lie inside their tensors, and only outputs the crop determines are kept (graph/incremental/paths.py).

Everything here is vectorized over the positions of a batch (numpy gathers and scatters, one
onnxruntime call per stage), and every model run goes through the message-shaped Runtime.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from convscope.graph.analysis import data_tensors
from convscope.graph.incremental.paths import changed_interval, early_path
from convscope.graph.incremental.stages import IncrementalPlan, StagePlan, graph_cost, plan_stages
from convscope.model.types import ModelRecord
from convscope.runtime.graphs import StageGraph, TailGraph, graph_for
from convscope.runtime.sessions import Runtime

log = logging.getLogger(__name__)

# Below this share of the plain forward cost saved, the bookkeeping is not worth it.
MIN_SAVING = 0.05


class NotIncremental(Exception):
    """Why incremental inference cannot serve a request; the caller falls back to the plain engine."""


@dataclass(frozen=True)
class Boxes:
    """Occluder boxes on a grid: box (i, j) covers rows [y0[i], y1[i]) and columns [x0[j], x1[j])."""

    y0: np.ndarray
    y1: np.ndarray
    x0: np.ndarray
    x1: np.ndarray

    @property
    def grid(self) -> tuple[int, int]:
        return len(self.y0), len(self.x0)


@dataclass
class _Stage:
    plan: StagePlan
    spec: StageGraph
    source: np.ndarray  # [C, H, W] the source tensor of the unoccluded image
    starts: tuple[np.ndarray, np.ndarray]  # per grid row / column: where the source crop starts
    windows: tuple[np.ndarray, np.ndarray]  # per grid row / column: where the exact window of the target starts


def _gather(source: np.ndarray, rows: np.ndarray, cols: np.ndarray, lengths: tuple[int, int]) -> np.ndarray:
    """Crops [B, C, h, w] of ``source`` [C, H, W] starting at (rows[b], cols[b])."""
    windows = sliding_window_view(source, lengths, axis=(1, 2)).transpose(1, 2, 0, 3, 4)  # [H-h+1, W-w+1, C, h, w]
    return windows[rows, cols]  # fancy indexing on the leading axes: one copy, already [B, C, h, w]


def _pick(batch: np.ndarray, rows: np.ndarray, cols: np.ndarray, lengths: tuple[int, int]) -> np.ndarray:
    """Per sample b, the [C, h, w] window of ``batch`` [B, C, H, W] at (rows[b], cols[b])."""
    windows = sliding_window_view(batch, lengths, axis=(2, 3))  # [B, C, H-h+1, W-w+1, h, w]
    return windows[np.arange(len(batch)), :, rows, cols]


def _paste(
    crops: np.ndarray, origin: tuple[np.ndarray, np.ndarray], region: np.ndarray, anchors: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Overwrite, in each crop (starting at ``origin`` in the tensor's frame), the rows and columns
    that ``region`` (starting at ``anchors``) covers.

    Positions are grouped by where the region falls in the crop (inside the map most share one
    offset), and each group is one sliced assignment."""
    height, width = crops.shape[2:]
    rows, cols = region.shape[2:]
    offsets = np.stack([anchors[0] - origin[0], anchors[1] - origin[1]], axis=1)
    distinct, group = np.unique(offsets, axis=0, return_inverse=True)
    for index, (dy, dx) in enumerate(distinct.tolist()):
        y0, y1, x0, x1 = max(0, dy), min(height, dy + rows), max(0, dx), min(width, dx + cols)
        if y0 >= y1 or x0 >= x1:
            continue
        members = np.flatnonzero(group.ravel() == index)
        crops[members, :, y0:y1, x0:x1] = region[members, :, y0 - dy : y1 - dy, x0 - dx : x1 - dx]
    return crops


@dataclass
class _Geometry:
    """A plan for one (model, output, image size, box grid), or why there is none."""

    plan: IncrementalPlan | None
    summary: str
    share: float = 0.0  # estimated share of the plain forward cost saved
    verified: bool = False


_PLANS: OrderedDict[tuple[object, ...], _Geometry] = OrderedDict()
_PLANS_LOCK = threading.Lock()
PLAN_CACHE_SIZE = 64


def _geometry(runtime: Runtime, record: ModelRecord, output: str, image: np.ndarray, boxes: Boxes) -> _Geometry:
    """Plans depend only on the graph and the geometry, not on pixel values: cached."""
    key = (record.id, output, image.shape, *(tuple(edge.tolist()) for edge in (boxes.y0, boxes.y1, boxes.x0, boxes.x1)))
    with _PLANS_LOCK:
        if key in _PLANS:
            _PLANS.move_to_end(key)
            return _PLANS[key]
    base = runtime.base_graph(record.id, dynamic_batch=True)
    input_name = record.input.name
    tensors = data_tensors(base.graph)
    outputs = {o.name for o in record.outputs}
    probe = runtime.run(record.id, graph_for(set(tensors), outputs), {input_name: image[None]}, tensors, dynamic_batch=True)
    shapes = {name: tuple(int(d) for d in np.shape(value)) for name, value in probe.items()}
    shapes[input_name] = (1, *image.shape)
    path = early_path(base, input_name, output, shapes)
    if not path.cuts:
        geometry = _Geometry(None, f"no tensor to splice into before the output: {path.stop}")
    else:
        rows = changed_interval(path, 0, boxes.y0, boxes.y1)
        cols = changed_interval(path, 1, boxes.x0, boxes.x1)
        plan = plan_stages(path, {cut: (rows[cut], cols[cut]) for cut in path.cuts})
        if plan is None:
            geometry = _Geometry(None, f"recomputing regions would save nothing (the local part ends at: {path.stop})")
        else:
            last = plan.stages[-1].target
            share = plan.saving / graph_cost(base, shapes)
            geometry = _Geometry(
                plan,
                f"{len(plan.stages)} stage(s) up to {last!r} {list(path.sizes[last])}, crops "
                + ", ".join(f"{list(stage.source_size)}→{list(stage.target_size)}" for stage in plan.stages)
                + f"; estimated {share:.0%} of the work saved; the local part ends at: {path.stop}",
                share,
            )
    with _PLANS_LOCK:
        _PLANS[key] = geometry
        while len(_PLANS) > PLAN_CACHE_SIZE:
            _PLANS.popitem(last=False)
    return geometry


class IncrementalEngine:
    """Scores of the model on occluded copies of one image, recomputing only what changes.

    Build it with :meth:`prepare`, which raises :class:`NotIncremental` with the reason when the
    graph or the request does not allow it; then call it with flat occluder positions.
    """

    name = "incremental"

    def __init__(
        self,
        runtime: Runtime,
        record: ModelRecord,
        output: str,
        fill: np.ndarray,
        boxes: Boxes,
        stages: list[_Stage],
        splice: np.ndarray,
        geometry: _Geometry,
    ) -> None:
        self.runtime = runtime
        self.record = record
        self.output = output
        self.fill = fill
        self.boxes = boxes
        self.stages = stages
        self.splice = splice  # [C, H, W] the last cut's activation of the unoccluded image
        channels, height, width = (int(d) for d in splice.shape)
        self.tail = TailGraph(stages[-1].plan.target, output, (channels, height, width))
        self.geometry = geometry
        self.summary = geometry.summary

    @classmethod
    def prepare(
        cls,
        runtime: Runtime,
        record: ModelRecord,
        output: str,
        image: np.ndarray,
        fill: np.ndarray,
        boxes: Boxes,
        *,
        min_saving: float = MIN_SAVING,
    ) -> IncrementalEngine:
        """Plan the stages for ``boxes`` on images of ``image``'s size (once per geometry), and
        cache the cut activations of ``image`` ([C, H, W]).  Refuses plans estimated to save less
        than ``min_saving`` of the plain forward cost."""
        if not record.dynamic_batch:
            raise NotIncremental("the model's batch dimension is fixed")
        if record.preprocessing.layout != "NCHW":
            raise NotIncremental("the model takes NHWC images")
        geometry = _geometry(runtime, record, output, image, boxes)
        if geometry.plan is None:
            raise NotIncremental(geometry.summary)
        if geometry.share < min_saving:
            raise NotIncremental(f"recomputing regions would save only {geometry.share:.0%} of the work ({geometry.summary})")
        plan = geometry.plan
        input_name = record.input.name
        needed = sorted({stage.source for stage in plan.stages[1:]} | {plan.stages[-1].target})
        outputs = {o.name for o in record.outputs}
        values = runtime.run(record.id, graph_for(set(needed), outputs), {input_name: image[None]}, needed, dynamic_batch=True)
        values[input_name] = image[None]
        stages = [
            _Stage(stage, StageGraph(stage), values[stage.source][0], (rows.start, cols.start), (rows.window, cols.window))
            for stage, (rows, cols) in zip(plan.stages, plan.placements)
        ]
        return cls(runtime, record, output, fill, boxes, stages, values[plan.stages[-1].target][0], geometry)

    @property
    def verified(self) -> bool:
        """Whether this plan already matched the plain engine once (see ``mark_verified``)."""
        return self.geometry.verified

    def mark_verified(self) -> None:
        self.geometry.verified = True

    def __call__(self, positions: np.ndarray, *, threads: int = 0) -> np.ndarray:
        """The model's ``output`` for the occluder at each flat grid position, [B, *output];
        ``threads``: onnxruntime's intra-op threads (0: one per core)."""
        _, grid_x = self.boxes.grid
        gy, gx = positions // grid_x, positions % grid_x
        window: np.ndarray | None = None
        anchors: tuple[np.ndarray, np.ndarray] = (gy, gx)
        for stage in self.stages:
            plan = stage.plan
            top, left = stage.starts[0][gy], stage.starts[1][gx]
            crops = _gather(stage.source, top, left, plan.source_size)
            if window is None:  # the first stage's source is the image: draw the box in
                fill = _gather(self.fill, top, left, plan.source_size)
                y = top[:, None] + np.arange(plan.source_size[0])[None, :]
                x = left[:, None] + np.arange(plan.source_size[1])[None, :]
                in_y = (y >= self.boxes.y0[gy][:, None]) & (y < self.boxes.y1[gy][:, None])
                in_x = (x >= self.boxes.x0[gx][:, None]) & (x < self.boxes.x1[gx][:, None])
                crops = np.where((in_y[:, :, None] & in_x[:, None, :])[:, None], fill, crops)
            else:
                crops = _paste(crops, (top, left), window, anchors)
            out = self.runtime.run(
                self.record.id, stage.spec, {plan.source: crops}, [plan.target], dynamic_batch=True, threads=threads
            )[plan.target]
            if out.shape[2:] != plan.target_size:
                raise RuntimeError(f"stage {plan.target!r} gave crops of {out.shape[2:]}, planned {plan.target_size}")
            anchors = (stage.windows[0][gy], stage.windows[1][gx])
            window = _pick(out, anchors[0] - top // plan.stride[0], anchors[1] - left // plan.stride[1], plan.window)
        if window is None:
            raise RuntimeError("an incremental engine without stages")
        full = np.empty((len(positions), *self.splice.shape), self.splice.dtype)
        full[:] = self.splice
        view = sliding_window_view(full, window.shape[2:], axis=(2, 3), writeable=True)
        view[np.arange(len(positions)), :, anchors[0], anchors[1]] = window
        return self.runtime.run(
            self.record.id, self.tail, {self.tail.start: full}, [self.output], dynamic_batch=True, threads=threads
        )[self.output]
