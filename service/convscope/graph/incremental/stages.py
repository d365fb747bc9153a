"""The stage planner of incremental inference, and its cost model.

* :func:`plan_stage` / :func:`plan_stages` split the local part at cuts into stages.  A stage
  runs the graph's own nodes on a fixed-size crop of its source tensor, with the ops' own
  padding; crops lie inside their tensor and start at multiples of the stage's stride, so crop
  outputs line up with whole-map outputs.  Outputs near a crop edge that is not the tensor's
  edge are wrong (they saw padding instead of neighbours): the plan tracks, per placement, the
  *exact* zone — shrunk by each op's halo (kernel, stride, pads, dilation) — and picks crops
  large enough that every changed region is exact.  A cost model chooses the stages.

Pure, as ``paths.py``: an :class:`EarlyPath` and changed intervals in, plans out.
``graph/incremental/submodels.py`` builds the stage and tail models from the plans;
``methods/occlusion_engine.py`` runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from convscope.graph.incremental.paths import EarlyPath, LocalNode, constant_shapes

# Cost model, in multiply-add equivalents per output element: a sliding-window op costs its
# multiply-adds plus the memory traffic every op pays; copying a tensor in numpy costs about as
# much per element as a memory-bound op.
ELEMENT_COST = 8.0
COPY_COST = 8.0
# A stage boundary costs more than the numpy copies: onnxruntime reorders the stage's input into
# its blocked layout and its output back, and every run has a fixed overhead.  Charged as two
# copies of the source and target crops: on EfficientNet-Lite0 that plans 9 stages instead of
# 12 (window 32 stride 16) and 14 (window 16 stride 8), which took 4–9 % more CPU
# (docs/occlusion_speed.md).
BOUNDARY_COST = 2 * COPY_COST


BORDER = 1 << 40  # an exact zone that reaches past the edge of its tensor


@dataclass(frozen=True)
class StagePlan:
    """Recompute crops of ``target`` from crops of ``source`` ([N, C, *source_size])."""

    source: str
    target: str
    nodes: tuple[int, ...]
    pads: tuple[tuple[int, tuple[int, int, int, int]], ...]  # explicit pads of the window ops (auto_pad resolved)
    source_size: tuple[int, int]
    source_channels: int
    target_size: tuple[int, int]
    target_channels: int
    stride: tuple[int, int]  # source pixels per target pixel
    window: tuple[int, int]  # size of the exact window of the target passed on (≥ every changed region)
    cost: float = field(default=0.0, compare=False)


@dataclass(frozen=True, eq=False)
class Placement:
    """Per occluder row (axis 0) or column (axis 1): where the stage's crop goes."""

    start: np.ndarray  # first row of the source crop (a multiple of the stride)
    window: np.ndarray  # first row of the exact window in the target


class PlanError(Exception):
    """A stage cannot be planned (its branches disagree, or no crop fits)."""


def _stage_nodes(path: EarlyPath, source: str, target: str) -> list[int]:
    return sorted(path.ancestors[target] - path.ancestors[source])


def _along(
    path: EarlyPath, nodes: Sequence[int], source: str, start: int, window: Callable[[LocalNode, int], int], disagree: str
) -> dict[str, int]:
    """A per-tensor number carried from ``source`` (``start``) through the stage's ``nodes``:
    mapped by ``window(node, number)`` at sliding-window ops, unchanged elsewhere; branches that
    meet must agree (``disagree`` says how they differed)."""
    values = {source: start}
    for index in nodes:
        item = path.nodes[index]
        found = {values[name] for _, name in item.data_inputs}
        if len(found) != 1:
            raise PlanError(f"branches meeting at {item.label!r} {disagree}")
        value = found.pop()
        values[item.output] = window(item, value) if item.axes is not None else value
    return values


def _stride(path: EarlyPath, nodes: Sequence[int], source: str, target: str, axis: int) -> int:
    return _along(path, nodes, source, 1, lambda item, step: step * item.axes[axis].stride, "move with different strides")[target]


def _crop_sizes(path: EarlyPath, nodes: Sequence[int], source: str, axis: int, length: int) -> dict[str, int]:
    def window(item: LocalNode, size: int) -> int:
        size = item.axes[axis].output_size(size)
        if size < 1:
            raise PlanError(f"a crop of {length} is too small for {item.label!r}")
        return size

    return _along(path, nodes, source, length, window, "differ in crop size")


def _exact(
    path: EarlyPath,
    nodes: Sequence[int],
    source: str,
    target: str,
    axis: int,
    starts: np.ndarray,
    length: int,
    *,
    borders: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """For source crops [start, start + length): the exact zone of the target's crop, BORDER-
    extended where it reaches a tensor edge that is also a crop edge (``borders=False``: as if
    the crops never touched an edge)."""
    size = path.sizes[source][axis]
    lo = np.where(borders & (starts == 0), -BORDER, starts)
    hi = np.where(borders & (starts + length == size), BORDER, starts + length)
    zones = {source: (lo, hi)}
    for index in nodes:
        item = path.nodes[index]
        ins = [zones[name] for _, name in item.data_inputs]
        lo, hi = ins[0]
        for other_lo, other_hi in ins[1:]:
            lo, hi = np.maximum(lo, other_lo), np.minimum(hi, other_hi)
        if item.axes is not None:
            geo = item.axes[axis]
            lo = np.where(lo <= -BORDER, -BORDER, -((-(lo + geo.pad_begin)) // geo.stride))
            hi = np.where(hi >= BORDER, BORDER, (hi + geo.pad_begin - geo.extent) // geo.stride + 1)
        zones[item.output] = (lo, hi)
    return zones[target]


def _place_axis(
    path: EarlyPath, nodes: Sequence[int], source: str, target: str, axis: int, changed: tuple[np.ndarray, np.ndarray]
) -> tuple[int, int, int, int, Placement]:
    """The smallest crop (along one axis) that makes every changed region exact somewhere, and
    where to put it.  Returns (source crop, target crop, stride, window, placement).

    Inside a tensor, a crop loses a fixed halo at each end (crop starts are multiples of the
    stride, and all crop lengths of a stage agree modulo it); at a tensor edge it loses nothing.
    So a crop whose exact part is as long as the largest changed region fits every region: put
    it ``halo`` before the region, clamped into the tensor."""
    stride = _stride(path, nodes, source, target, axis)
    size, target_size = path.sizes[source][axis], path.sizes[target][axis]
    r0, r1 = changed
    nonempty = r1 > r0
    r0, r1 = np.where(nonempty, r0, 0), np.where(nonempty, r1, 1)
    window = int((r1 - r0).max())
    smallest = size - (size - 1) // stride * stride  # lengths ≡ size (mod stride), so crops can end at the edge
    while True:
        try:
            base = _crop_sizes(path, nodes, source, axis, smallest)[target]
            break
        except PlanError:
            smallest += stride
            if smallest > size:
                raise PlanError(f"{target!r} cannot be computed from a crop of {source!r}") from None
    probe_start = np.array([stride * (size + 1)])  # far from any edge, aligned
    lo, hi = _exact(path, nodes, source, target, axis, probe_start, smallest + stride * size, borders=False)
    first = int(probe_start[0]) // stride
    halo_before = int(lo[0]) - first
    halo_after = first + base + size - int(hi[0])
    length = smallest + stride * max(0, window + halo_before + halo_after - base)
    length = min(length, size)
    out = _crop_sizes(path, nodes, source, axis, length)[target]
    last = (size - length) // stride
    slot = np.clip(r0 - halo_before, 0, last)
    lo, hi = _exact(path, nodes, source, target, axis, slot * stride, length)
    lo, hi = np.clip(lo, slot, slot + out), np.clip(hi, slot, slot + out)
    lo, hi = np.clip(lo, 0, target_size), np.clip(hi, 0, target_size)
    if not ((lo <= r0) & (hi >= r1) & (hi - lo >= window)).all():
        raise PlanError(f"crops of {source!r} leave part of a changed region of {target!r} inexact")
    return length, out, stride, window, Placement(slot * stride, np.clip(r0, lo, hi - window))


def _window_pads(path: EarlyPath, nodes: Sequence[int]) -> tuple[tuple[int, tuple[int, int, int, int]], ...]:
    pads = []
    for index in nodes:
        axes = path.nodes[index].axes
        if axes is not None:
            pads.append((index, (axes[0].pad_begin, axes[1].pad_begin, axes[0].pad_end, axes[1].pad_end)))
    return tuple(pads)


def plan_stage(
    path: EarlyPath,
    source: str,
    target: str,
    changed: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> tuple[StagePlan, tuple[Placement, Placement]]:
    """Plan the stage from cut ``source`` (or the input) to cut ``target``, given the changed
    rows and columns of ``target`` per occluder row and column (``changed_interval``)."""
    nodes = _stage_nodes(path, source, target)
    axes = [_place_axis(path, nodes, source, target, axis, changed[axis]) for axis in range(2)]
    lengths = (axes[0][0], axes[1][0])
    sizes = [_crop_sizes(path, nodes, source, axis, lengths[axis]) for axis in range(2)]
    cost = 0.0
    for index in nodes:
        item = path.nodes[index]
        elements = path.channels[item.output] * sizes[0][item.output] * sizes[1][item.output]
        cost += elements * (item.macs + ELEMENT_COST)
    window = (axes[0][3], axes[1][3])
    channels, target_channels = path.channels[source], path.channels[target]
    # Gather the crop, paste the previous window into it, take this stage's window out.
    cost += COPY_COST * (2 * channels * lengths[0] * lengths[1] + target_channels * window[0] * window[1])
    cost += BOUNDARY_COST * (channels * lengths[0] * lengths[1] + target_channels * axes[0][1] * axes[1][1])
    plan = StagePlan(
        source=source,
        target=target,
        nodes=tuple(nodes),
        pads=_window_pads(path, nodes),
        source_size=lengths,
        source_channels=channels,
        target_size=(axes[0][1], axes[1][1]),
        target_channels=target_channels,
        stride=(axes[0][2], axes[1][2]),
        window=window,
        cost=cost,
    )
    return plan, (axes[0][4], axes[1][4])


def full_cost(path: EarlyPath, indices: frozenset[int] | set[int]) -> float:
    """What the nodes cost on whole maps, per sample (same units as StagePlan.cost)."""
    total = 0.0
    for index in indices:
        item = path.nodes[index]
        height, width = path.sizes[item.output]
        total += path.channels[item.output] * height * width * (item.macs + ELEMENT_COST)
    return total


@dataclass(frozen=True, eq=False)
class IncrementalPlan:
    stages: tuple[StagePlan, ...]
    placements: tuple[tuple[Placement, Placement], ...]
    saving: float  # estimated cost saved per sample, in the units of StagePlan.cost
    recomputed: float  # what the stages and the splice cost, per sample
    replaced: float  # what the same nodes cost on whole maps


Changed = Mapping[str, tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]
# A stage spans at most this many candidate cuts (longer ones accumulate halo; planning stays fast).
MAX_STAGE_SPAN = 8


def _candidate_cuts(path: EarlyPath, changed: Changed) -> list[str]:
    """Cuts worth ending a stage at: some part of the map stays unchanged, and the next cut is
    not just an elementwise op away (then splice after it: same crop, one op less to redo)."""
    cuts = [cut for cut in path.cuts if cut in changed]
    kept = []
    for position, cut in enumerate(cuts):
        (y0, y1), (x0, x1) = changed[cut]
        height, width = path.sizes[cut]
        if int((y1 - y0).max()) >= height and int((x1 - x0).max()) >= width:
            continue
        following = cuts[position + 1] if position + 1 < len(cuts) else None
        if following is not None:
            between = path.ancestors[following] - path.ancestors[cut]
            if all(path.nodes[i].axes is None and len(path.nodes[i].data_inputs) == 1 for i in between):
                continue
        kept.append(cut)
    return kept


def plan_stages(path: EarlyPath, changed: Changed) -> IncrementalPlan | None:
    """The cheapest chain of stages input → cut → … → cut by the cost model, or None when no
    chain saves anything.  ``changed[tensor]``: its changed rows and columns per occluder row and
    column (for the input: the boxes themselves)."""
    cuts = _candidate_cuts(path, changed)
    best: dict[str, tuple[float, tuple[tuple[StagePlan, tuple[Placement, Placement]], ...]]] = {}
    for j, target in enumerate(cuts):
        options = []
        earlier = [(cuts[i], best[cuts[i]]) for i in range(max(0, j - MAX_STAGE_SPAN), j) if cuts[i] in best]
        for source, before in [(path.input, (0.0, ()))] + earlier:
            try:
                stage = plan_stage(path, source, target, changed[target])
            except PlanError:
                continue
            options.append((before[0] + stage[0].cost, (*before[1], stage)))
        if options:
            best[target] = min(options, key=lambda option: option[0])
    choice: IncrementalPlan | None = None
    for target, (cost, stages) in best.items():
        height, width = path.sizes[target]
        splice = COPY_COST * path.channels[target] * height * width
        replaced = full_cost(path, path.ancestors[target])
        saving = replaced - cost - splice
        if saving > 0 and (choice is None or saving > choice.saving):
            choice = IncrementalPlan(tuple(s for s, _ in stages), tuple(p for _, p in stages), saving, cost + splice, replaced)
    return choice


def graph_cost(model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> float:
    """The whole graph's cost per sample, in the units of StagePlan.cost (tensors of unknown
    shape count as free)."""
    weights = constant_shapes(model.graph)
    total = 0.0
    for node in model.graph.node:
        shape = shapes.get(node.output[0]) if node.output else None
        if shape is None:
            continue
        macs = 0
        if node.op_type == "Conv" and node.input[1] in weights:
            macs = int(np.prod(weights[node.input[1]][1:]))
        elif node.op_type in ("Gemm", "MatMul") and shapes.get(node.input[0]):
            macs = int(shapes[node.input[0]][-1])
        total += int(np.prod(shape[1:])) * (macs + ELEMENT_COST)
    return total
