"""Occlusion sensitivity (Zeiler & Fergus, "Visualizing and understanding convolutional
networks", ECCV 2014): slide a box filled with a baseline over the image and record the score of
the classes of interest at every position of the box.

Arguments (see :class:`OcclusionOptions`, ``methods/occlusion_options.py``): ``targets`` (flat
indices into one sample's output; default the top-1 class), ``output`` (default the first model
output), ``window`` (32, 32), ``stride`` (16, 16), ``fill`` (a constant in the model's input
space, ``"mean"`` — each channel's mean over the image — or ``"blur"`` — a Gaussian blur of the
image with σ a quarter of the window's longer side), ``score`` (``"probability"``: softmax over
the output unless it is already normalized; ``"raw"``), ``engine``, ``tolerance`` (engine
``"approximate"`` only), ``batch_size`` and ``occluded`` (for models with several inputs: which
input the box slides over, default the image input; the others are fed as given, repeated along
the batch of occluded copies).

Returns the score at every box position, [targets, Ho, Wo], and the attribution of Captum's
``Occlusion`` (``sliding_window_shapes=(C, h, w)``, ``strides=(C, s, s)``, ``baselines=fill``):
per input element, the mean over the boxes covering it of (unoccluded − occluded score).  Boxes
are placed as Captum places them: ⌈(H − h)/s⌉ + 1 rows of boxes (⌊(H − h)/s⌋ + 1 when s divides
H − h), the last one clipped at the border.

Two engines compute the same numbers.  The batched engine builds the occluded copies with numpy
broadcasting and runs them through the plain graph in batches sized to the memory budget.  The
incremental engine (``methods/occlusion_engine.py``) recomputes the early layers only around the box.
``engine="auto"`` uses the incremental one when the graph allows it and it saves work, else the
batched one, and says why in the log.  ``engine="approximate"`` evaluates (with the engine
"auto" picks) only part of the positions and interpolates the rest, allowing an error of at most
``tolerance`` in score units per position (``methods/drilldown.py``: adaptive drill-down); the
result reports the error bound it allowed and how many positions it evaluated.  At tolerance 0
it computes the exact map.

The method is a generator: it yields :class:`OcclusionProgress` before the first and after every
batch, then one :class:`OcclusionResult`.  Nothing is computed until the next event is asked
for, so a caller cancels by no longer asking (and closing the generator frees the memory).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from convscope.errors import InvalidArgument
from convscope.limits import RequestLimits, check_at_most
from convscope.methods import drilldown
from convscope.methods.occlusion_engine import MIN_SAVING, Boxes, IncrementalEngine, NotIncremental
from convscope.methods.occlusion_options import OcclusionOptions
from convscope.model.preprocessing import ModelInput, tiled_others
from convscope.model.types import ModelRecord
from convscope.runtime.context import INFERENCE_WORKERS, MethodContext, in_flight, parallel_runs, worker_threads
from convscope.runtime.graphs import graph_for
from convscope_client.choices import OcclusionEngine, OcclusionFill, OcclusionScore

log = logging.getLogger(__name__)

# Occluded copies per onnxruntime call, at most: beyond this, CPU throughput no longer grows
# and progress reports get sparse.
MAX_BATCH = 32
# Activation memory per sample, as a multiple of the largest tensor (onnxruntime keeps the
# inputs and outputs of the running node plus a few buffers alive).
PEAK_TENSORS = 4
# Incremental and plain engines must agree on the probe positions to this relative L2 error.
SELF_CHECK_TOLERANCE = 1e-3
NORMALIZED_TOLERANCE = 1e-3


@dataclass(frozen=True)
class OcclusionProgress:
    done: int  # occluder positions evaluated
    total: int


@dataclass(frozen=True)
class OcclusionResult:
    positions: np.ndarray  # [targets, Ho, Wo]: the score with the box at each position
    attribution: np.ndarray  # [targets, *input without batch]: Captum's Occlusion attribution
    targets: tuple[int, ...]
    baseline_scores: np.ndarray  # [targets]: the scores of the unoccluded input
    output: str
    labels: tuple[str, ...]
    engine: str  # which engine produced the numbers
    window: tuple[int, int]
    stride: tuple[int, int]
    png: bytes = b""  # added by render/results.py
    error_bound: float = 0.0  # engine "approximate": the largest error it allowed per position (drilldown.py)
    evaluated: int = 0  # positions the model was run on (the rest were interpolated)
    score: OcclusionScore = OcclusionScore.PROBABILITY
    # What the figure draws: the drop per target over the input's pixels, and the photo under it.
    maps: np.ndarray | None = field(default=None, repr=False, compare=False)
    picture: np.ndarray | None = field(default=None, repr=False, compare=False)


def window_grid(size: tuple[int, int], window: tuple[int, int], stride: tuple[int, int]) -> Boxes:
    """Box positions as Captum's Occlusion places them, the last ones clipped at the border."""
    edges = []
    for axis in range(2):
        length, extent, step = size[axis], window[axis], stride[axis]
        if extent > length:
            raise InvalidArgument(f"the window {list(window)} is larger than the image {list(size)}")
        if step > extent and extent < length:
            raise InvalidArgument(f"a stride {list(stride)} larger than the window {list(window)} would skip pixels")
        count = -(-(length - extent) // step) + 1
        starts = np.arange(count, dtype=np.int64) * step
        edges.append((starts, np.minimum(starts + extent, length)))
    return Boxes(edges[0][0], edges[0][1], edges[1][0], edges[1][1])


def fill_values(image: np.ndarray, fill: float | OcclusionFill, window: tuple[int, int]) -> np.ndarray:
    """What the box shows, per pixel of ``image`` [C, H, W]."""
    if isinstance(fill, float):
        return np.full_like(image, fill)
    if fill is OcclusionFill.MEAN:
        return np.broadcast_to(image.mean(axis=(1, 2), keepdims=True, dtype=np.float64), image.shape).astype(image.dtype)
    sigma = max(window) / 4
    smooth_y, smooth_x = (_gaussian_matrix(n, sigma) for n in image.shape[1:])
    return np.einsum("hy,cyx,wx->chw", smooth_y, image.astype(np.float64), smooth_x).astype(image.dtype)


def _gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """Rows of Gaussian weights, renormalized at the borders (no darkening at the edges)."""
    offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum(axis=1, keepdims=True)


class PlainEngine:
    """The model's output for occluded copies built with numpy broadcasting, one batch per call."""

    name = "batched"

    def __init__(
        self,
        context: MethodContext | None,
        record: ModelRecord,
        output: str,
        image: np.ndarray,
        fill: np.ndarray,
        boxes: Boxes,
        occluded: str,
        others: Mapping[str, np.ndarray],
        infer: Infer | None = None,
    ) -> None:
        self.context = context
        self.infer = infer
        self.record = record
        self.output = output
        self.image = image
        self.fill = fill
        self.boxes = boxes
        self.occluded = occluded
        self.others = others
        self.spec = graph_for({output}, {o.name for o in record.outputs})
        self.nhwc = record.preprocessing.layout == "NHWC"

    def run(self, batch: np.ndarray, *, threads: int = 0) -> np.ndarray:
        if self.nhwc:
            batch = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
        if self.infer is not None:
            return self.infer(batch, self.output)
        assert self.context is not None
        runtime = self.context.runtime
        feeds = {**tiled_others(self.record, self.others, len(batch)), self.occluded: batch}
        return runtime.run(
            self.record.id, self.spec, feeds, [self.output], dynamic_batch=self.record.dynamic_batch, threads=threads
        )[self.output]

    def __call__(self, positions: np.ndarray, *, threads: int = 0) -> np.ndarray:
        _, grid_x = self.boxes.grid
        gy, gx = positions // grid_x, positions % grid_x
        rows, cols = np.arange(self.image.shape[1]), np.arange(self.image.shape[2])
        in_y = (rows[None, :] >= self.boxes.y0[gy][:, None]) & (rows[None, :] < self.boxes.y1[gy][:, None])
        in_x = (cols[None, :] >= self.boxes.x0[gx][:, None]) & (cols[None, :] < self.boxes.x1[gx][:, None])
        inside = (in_y[:, :, None] & in_x[:, None, :])[:, None]
        return self.run(np.where(inside, self.fill[None], self.image[None]), threads=threads)


Evaluator = Callable[[np.ndarray], np.ndarray]
# (batch, output name) → that output: a model run elsewhere (oip/remote.py), seen as a black box.
Infer = Callable[[np.ndarray, str], np.ndarray]


def even_batches(positions: np.ndarray, step: int, workers: int) -> list[np.ndarray]:
    """``positions`` in order, in batches of at most ``step``, as many as a multiple of
    ``workers`` where there are enough positions, and of equal sizes (±1): a remainder batch or a
    drill-down round smaller than one batch would otherwise run alone while the other workers wait."""
    count = -(-len(positions) // step)
    count = min(len(positions), -(-count // workers) * workers)
    return np.array_split(positions, count) if count else []


def occlusion_batch_size(context: MethodContext, record: ModelRecord, requested: int) -> int:
    """Occluded copies per run: what the memory budget allows the ``INFERENCE_WORKERS`` runs in
    flight, capped at ``requested`` (or MAX_BATCH)."""
    if not record.dynamic_batch:
        return 1
    largest = max((layer.sample_bytes for layer in record.layers), default=0)
    inputs = math.prod(abs(d) for d in record.input.shape[1:]) * np.dtype(record.input.dtype).itemsize
    per_sample = max(1, inputs + PEAK_TENSORS * largest)
    fits = max(1, context.batch_budget_bytes // INFERENCE_WORKERS // per_sample)
    return int(min(fits, requested or MAX_BATCH))


def _relative_l2(got: np.ndarray, want: np.ndarray) -> float:
    scale = float(np.linalg.norm(want.astype(np.float64)))
    return float(np.linalg.norm(got.astype(np.float64) - want)) / max(scale, 1e-12)


def _choose_engine(
    context: MethodContext,
    record: ModelRecord,
    options: OcclusionOptions,
    output: str,
    image: np.ndarray,
    fill: np.ndarray,
    boxes: Boxes,
    plain: PlainEngine,
    threads: int,
) -> Evaluator:
    if options.engine is OcclusionEngine.BATCHED:
        return plain
    try:
        # Asked for by name, any saving will do; "auto" wants it to be worth the bookkeeping.
        min_saving = 0.0 if options.engine is OcclusionEngine.INCREMENTAL else MIN_SAVING
        engine = IncrementalEngine.prepare(context.runtime, record, output, image, fill, boxes, min_saving=min_saving)
    except NotIncremental as why:
        log.info("occlusion on %s: incremental inference not used: %s; using the batched engine", record.id[:12], why)
        return plain
    except Exception:  # a graph we mis-planned must cost speed, never an answer
        log.exception("occlusion on %s: planning incremental inference failed; using the batched engine", record.id[:12])
        return plain
    if engine.verified:
        log.info("occlusion on %s: incremental inference, %s", record.id[:12], engine.summary)
        return engine
    total = len(boxes.y0) * len(boxes.x0)
    probe = np.unique(np.array([0, total // 2, total - 1], np.int64))
    try:
        error = _relative_l2(engine(probe, threads=threads), plain(probe, threads=threads))
    except Exception:
        log.exception("occlusion on %s: the incremental engine failed its self-check; using the batched engine", record.id[:12])
        return plain
    if not error <= SELF_CHECK_TOLERANCE:
        log.warning(
            "occlusion on %s: incremental and plain engines disagree (relative L2 %.2e); using the batched engine",
            record.id[:12],
            error,
        )
        return plain
    engine.mark_verified()
    log.info("occlusion on %s: incremental inference, %s", record.id[:12], engine.summary)
    return engine


def _scores(raw: np.ndarray, targets: Sequence[int], softmax: bool) -> np.ndarray:
    flat = raw.reshape(len(raw), -1).astype(np.float64)
    if softmax:
        flat = np.exp(flat - flat.max(axis=1, keepdims=True))
        flat /= flat.sum(axis=1, keepdims=True)
    return flat[:, list(targets)]


def _is_normalized(flat: np.ndarray) -> bool:
    return bool((flat >= -NORMALIZED_TOLERANCE).all() and abs(float(flat.sum()) - 1) <= NORMALIZED_TOLERANCE)


def attribution_from_positions(positions: np.ndarray, baseline: np.ndarray, boxes: Boxes, size: tuple[int, int]) -> np.ndarray:
    """[targets, H, W]: per pixel, the mean over the boxes covering it of (baseline − score)."""
    rows, cols = np.arange(size[0]), np.arange(size[1])
    cover_y = ((rows[:, None] >= boxes.y0[None, :]) & (rows[:, None] < boxes.y1[None, :])).astype(np.float64)
    cover_x = ((cols[:, None] >= boxes.x0[None, :]) & (cols[:, None] < boxes.x1[None, :])).astype(np.float64)
    drops = baseline[:, None, None] - positions.astype(np.float64)
    # As two matrix products (``optimize=True``): einsum's default is one loop over all four
    # indices, several times slower at hundreds of positions.
    total = np.einsum("hi,tij,wj->thw", cover_y, drops, cover_x, optimize=True)
    count = np.outer(cover_y.sum(axis=1), cover_x.sum(axis=1))
    return total / np.maximum(count, 1)[None]


def _split_occluded(
    record: ModelRecord, model_input: ModelInput, occluded: str
) -> tuple[str, np.ndarray, Mapping[str, np.ndarray]]:
    """(name, value) of the input the box slides over, and the model's other inputs by name."""
    image = record.input.name
    if not occluded or occluded == image:
        return image, model_input.batch, model_input.others
    if occluded not in model_input.others:
        raise InvalidArgument(f"occluded {occluded!r} is none of the model's inputs {[spec.name for spec in record.inputs]}")
    others = {image: model_input.batch, **{name: value for name, value in model_input.others.items() if name != occluded}}
    return occluded, model_input.others[occluded], others


def occlusion(
    context: MethodContext | None,
    record: ModelRecord,
    model_input: ModelInput,
    options: OcclusionOptions,
    *,
    infer: Infer | None = None,
) -> Iterator[OcclusionProgress | OcclusionResult]:
    """Occlusion sensitivity of one image; see the module docstring.  With ``infer`` (a model
    served elsewhere) every batch goes through it, in batches of ``options.batch_size`` (default
    MAX_BATCH), and ``context`` is not used."""
    if infer is not None and options.engine is OcclusionEngine.INCREMENTAL:
        raise InvalidArgument("a remote model is a black box: its occlusion runs on the batched engine only")
    occluded, batch, others = _split_occluded(record, model_input, options.occluded)
    if batch.ndim != 4:
        raise InvalidArgument(
            f"occlusion needs an image input [N, C, H, W] or [N, H, W, C]; {occluded!r} has shape {list(batch.shape)}"
        )
    if len(batch) != 1:
        raise InvalidArgument(f"occlusion maps one image at a time; send one, not {len(batch)}")
    if not np.issubdtype(batch.dtype, np.floating):
        raise InvalidArgument(f"occlusion needs a floating-point input; {occluded!r} takes {batch.dtype}")
    nhwc = record.preprocessing.layout == "NHWC"
    image = np.ascontiguousarray(batch[0].transpose(2, 0, 1) if nhwc else batch[0])
    size = (image.shape[1], image.shape[2])
    boxes = window_grid(size, options.window, options.stride)
    grid = boxes.grid
    total = grid[0] * grid[1]
    limits = context.limits if context is not None else RequestLimits()  # a remote model: the defaults
    check_at_most(total, limits.max_occlusion_positions, "occluder positions", "--max-occlusion-positions", "use a larger stride")
    output = record.tensor(options.output) if options.output else record.outputs[0].name
    fill = fill_values(image, options.fill, options.window)
    plain = PlainEngine(context, record, output, image, fill, boxes, occluded, others, infer)
    # Sessions are cached per thread count: every run below uses the loop's, so each graph is
    # built once, not once for the reference and self-check and again for the loop.
    threads = worker_threads(parallel_runs(context.runtime)) if context is not None else worker_threads()

    reference = plain.run(image[None], threads=threads)
    flat = reference.reshape(-1)
    softmax = options.score is OcclusionScore.PROBABILITY and not _is_normalized(flat)
    targets = options.targets or (int(np.argmax(flat)),)
    bad = [t for t in targets if not 0 <= t < flat.size]
    if bad:
        raise InvalidArgument(f"target(s) {bad} out of range: output {output!r} has {flat.size} values per sample")
    baseline = _scores(reference, targets, softmax)[0]

    if infer is not None or context is None:  # a black box: whole runs only, batched as asked
        evaluate: Evaluator = plain
        step = (options.batch_size or MAX_BATCH) if record.dynamic_batch else 1
    else:
        evaluate = _choose_engine(context, record, options, output, image, fill, boxes, plain, threads)
        step = occlusion_batch_size(context, record, options.batch_size)
    engine_name = getattr(evaluate, "name", "batched")
    scores = np.full((total, len(targets)), np.nan)
    started = time.perf_counter()
    yield OcclusionProgress(0, total)

    def run_positions(batches: Sequence[np.ndarray]) -> Iterator[OcclusionProgress]:
        # INFERENCE_WORKERS batches at once: one runs onnxruntime while the other's numpy work
        # (occluded copies, crops, splices) fills the gaps.  Closing this generator (a cancelled
        # call) lets the running batches finish and starts no more.
        with contextlib.closing(in_flight(lambda positions: evaluate(positions, threads=threads), batches)) as results:
            for positions, raw in results:
                scores[positions] = _scores(raw, targets, softmax)
                done = int(np.count_nonzero(~np.isnan(scores[:, 0])))
                log.debug("occlusion on %s: %d/%d positions (%s)", record.id[:12], done, total, engine_name)
                yield OcclusionProgress(done, total)

    error_bound = 0.0
    if options.engine is OcclusionEngine.APPROXIMATE:
        on_grid = scores.reshape(*grid, len(targets))
        wanted = drilldown.coarse_positions(grid)
        while len(wanted):
            yield from run_positions(even_batches(wanted, step, INFERENCE_WORKERS))
            wanted = drilldown.to_refine(on_grid, options.tolerance)
        evaluated = int(np.count_nonzero(~np.isnan(scores[:, 0])))
        error_bound = drilldown.interpolate(on_grid)
        log.info("occlusion on %s: approximate, evaluating with the %s engine", record.id[:12], engine_name)
        engine_name = OcclusionEngine.APPROXIMATE.value
        if evaluated < total:
            yield OcclusionProgress(total, total)
    else:
        everything = np.arange(total, dtype=np.int64)
        yield from run_positions([everything[start : start + step] for start in range(0, total, step)])
        evaluated = total
    log.info(
        "occlusion on %s: %d of %d positions evaluated in %.2f s (%s engine, batches of %d), error bound %.2g",
        record.id[:12],
        evaluated,
        total,
        time.perf_counter() - started,
        engine_name,
        step,
        error_bound,
    )

    positions_map = scores.T.reshape(len(targets), *grid)
    maps = attribution_from_positions(positions_map, baseline, boxes, size)
    attribution = np.broadcast_to(maps[:, None], (len(targets), image.shape[0], *size)).astype(np.float32)
    if nhwc:
        attribution = np.ascontiguousarray(attribution.transpose(0, 2, 3, 1))
    labels = record.target_labels(output, [int(t) for t in targets])
    # The pictures are the image input's: a box slid over another input is drawn on no photo.
    picture = model_input.pictures[0] if model_input.pictures and occluded == record.input.name else None
    yield OcclusionResult(
        positions=positions_map.astype(np.float32),
        attribution=attribution,
        targets=tuple(int(t) for t in targets),
        baseline_scores=baseline.astype(np.float32),
        output=output,
        labels=labels,
        engine=engine_name,
        window=options.window,
        stride=options.stride,
        error_bound=error_bound,
        evaluated=evaluated,
        score=options.score,
        maps=maps,
        picture=picture,
    )
