"""Class models and unit visualizations by gradient ascent on the input.

A class model (Simonyan, Vedaldi & Zisserman 2014) maximizes the target's score before
softmax; with ``layer`` and ``channel``, activation maximization raises the channel's mean
activation.  The image lives in pixel space p ∈ [0, 1] (the model's normalization applied when
it is fed) and is regularized as Yosinski et al. 2015 do: L2 decay towards grey, a Gaussian
blur every few steps, random jitter of each step's view, clipping the pixels of smallest norm
(the lowest ``norm_percentile`` % of |p − ½| over channels) to grey, and clipping to [0, 1].
Several samples (``batch`` seeds of one target, or one per target) are optimized in one batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from convscope.errors import InvalidArgument
from convscope.graph.loss_seed import rule_input_names
from convscope.methods.optimize import Adam, Objective, PixelSpace, StepProgress, check_steps, float_layer, loss_gradient
from convscope.model.types import ModelRecord
from convscope.runtime.context import MethodContext

MAX_BATCH = 64


@dataclass(frozen=True)
class VisualizationOptions:
    target: int | Sequence[int] | None = None  # class index (flat index into the first output)
    layer: str | None = None  # with channel: a unit's mean activation instead of a class score
    channel: int | None = None
    steps: int = 200
    lr: float = 0.05  # Adam's step in pixel units
    l2: float = 1e-3  # per-step decay of (p − ½) towards grey
    blur_every: int = 4
    blur_sigma: float = 1.0  # pixels
    jitter: int = 16  # the view is rolled by up to this many pixels each step
    norm_percentile: float = 0.0  # each step, pixels below this percentile of norm become grey
    seed: int = 0
    batch: int = 1  # samples per target (different random starts)


@dataclass(frozen=True)
class VisualizationResult:
    array: np.ndarray  # model input [N, ...]
    pictures: np.ndarray  # [N, H, W, 3] uint8
    score_history: np.ndarray  # [steps, N]: the objective at each step's iterate
    scores: np.ndarray  # [N] the objective at the result
    tensor: str  # what was maximized
    targets: np.ndarray  # [N] class or channel of each sample
    probabilities: np.ndarray | None  # [N] softmax probability of the target (class models)


def _objective(record: ModelRecord, options: VisualizationOptions) -> tuple[str, np.ndarray, np.ndarray]:
    """(tensor, per-sample targets, per-sample seeds): the seed of a linear objective."""
    if options.layer is not None or options.channel is not None:
        if options.layer is None or options.channel is None or options.target is not None:
            raise InvalidArgument("a unit is named by layer and channel together (and no target)")
        shape = float_layer(record, options.layer)
        axis = record.feature_axes(options.layer)[0] - 1 if len(shape) == 3 else 0  # one sample: no batch axis
        if not 0 <= options.channel < shape[axis]:
            raise InvalidArgument(f"channel {options.channel} is out of range: {options.layer!r} has {shape[axis]} channels")
        plane = np.zeros(shape, np.float32)
        index = [slice(None)] * len(shape)
        index[axis] = options.channel
        plane[tuple(index)] = 1 / (plane[tuple(index)].size or 1)
        targets = np.full(options.batch, options.channel)
        return options.layer, targets, np.repeat(plane[None], options.batch, axis=0)
    tensor = record.outputs[0].name
    shape = float_layer(record, tensor)
    size = int(np.prod(shape))
    wanted = np.atleast_1d(np.asarray(0 if options.target is None else options.target, np.int64))
    if len(wanted) * options.batch > MAX_BATCH:
        raise InvalidArgument(f"{len(wanted) * options.batch} samples (targets × batch) is over the limit of {MAX_BATCH}")
    bad = wanted[(wanted < 0) | (wanted >= size)]
    if bad.size:
        raise InvalidArgument(f"target {int(bad[0])} is out of range: {tensor!r} has {size} entries (0..{size - 1})")
    targets = np.repeat(wanted, options.batch)
    seed = np.zeros((len(targets), size), np.float32)
    seed[np.arange(len(targets)), targets] = 1
    return tensor, targets, seed.reshape(len(targets), *shape)


def check(options: VisualizationOptions, max_steps: int) -> None:
    check_steps(options.steps, max_steps)
    if not 1 <= options.batch <= MAX_BATCH:
        raise InvalidArgument(f"batch must be between 1 and {MAX_BATCH}, got {options.batch}")
    if options.lr <= 0 or options.l2 < 0 or options.blur_every < 0 or options.blur_sigma < 0 or options.jitter < 0:
        raise InvalidArgument("lr must be > 0, and l2, blur_every, blur_sigma and jitter ≥ 0")
    if not 0 <= options.norm_percentile < 100:
        raise InvalidArgument(f"norm_percentile must be in [0, 100), got {options.norm_percentile}")


def visualize(
    context: MethodContext, record: ModelRecord, options: VisualizationOptions, *, max_steps: int
) -> Iterator[StepProgress | VisualizationResult]:
    check(options, max_steps)
    tensor, targets, seed = _objective(record, options)
    space = PixelSpace.of(record)
    shape = tuple(record.input.shape[1:])
    if min(shape) <= 0:
        raise InvalidArgument("the model's input has no fixed size to synthesize an image of")
    rng = np.random.default_rng(options.seed)
    pixels = (0.5 + 0.05 * rng.standard_normal((len(targets), *shape))).astype(np.float32)
    objective = Objective(tensor, "given", {rule_input_names(tensor, "given")[0]: seed})
    optimizer = Adam(options.lr)
    axes = space.spatial_axes
    history = []
    for step in range(options.steps):
        shift = tuple(rng.integers(-options.jitter, options.jitter + 1, 2)) if options.jitter else (0, 0)
        values, gradient = loss_gradient(context, record, space.to_input(np.roll(pixels, shift, axes)), objective)
        ascent = np.roll(space.input_gradient_to_pixels(gradient), (-shift[0], -shift[1]), axes)
        pixels = optimizer.step(pixels, -ascent)  # Adam descends: ascend the score
        pixels = 0.5 + (1 - options.l2) * (pixels - 0.5)
        if options.blur_every and options.blur_sigma and (step + 1) % options.blur_every == 0:
            sigma = [0.0] * pixels.ndim
            for axis in axes:
                sigma[axis] = options.blur_sigma
            pixels = gaussian_filter(pixels, sigma).astype(np.float32)
        if options.norm_percentile:
            pixels = grey_low_norm(pixels, options.norm_percentile, space.channel_axis)
        pixels = np.clip(pixels, 0, 1)
        score = (values.reshape(len(targets), -1) * seed.reshape(len(targets), -1)).sum(axis=1)
        history.append(score)
        yield StepProgress(step + 1, options.steps, float(score.mean()))
    array = space.to_input(pixels)
    final = context.forward(record, array, [tensor])[tensor]
    scores = (final.reshape(len(targets), -1) * seed.reshape(len(targets), -1)).sum(axis=1)
    probabilities = None
    if options.layer is None:
        flat = final.reshape(len(targets), -1)
        exp = np.exp(flat - flat.max(axis=1, keepdims=True))
        probabilities = (exp / exp.sum(axis=1, keepdims=True))[np.arange(len(targets)), targets]
    yield VisualizationResult(array, space.pictures(pixels), np.array(history), scores, tensor, targets, probabilities)


def grey_low_norm(pixels: np.ndarray, percentile: float, channel_axis: int) -> np.ndarray:
    """Pixels whose norm of p − ½ over channels is below ``percentile`` (per sample) set to grey."""
    norms = np.linalg.norm(pixels - 0.5, axis=channel_axis, keepdims=True)
    cutoff = np.percentile(norms.reshape(len(norms), -1), percentile, axis=1).reshape(-1, *[1] * (pixels.ndim - 1))
    return np.where(norms < cutoff, np.float32(0.5), pixels).astype(np.float32)
