"""Gradient maps: which input pixels the score is sensitive to.

Methods (each a function of the gradient engine in methods/gradients.py):

- ``gradient``: d score / d input (Simonyan, Vedaldi & Zisserman 2013), input-shaped;
  ``saliency``: its absolute value, max over channels, H×W.
- ``input_x_gradient``: input · gradient (Shrikumar et al. 2016).
- ``deconvnet`` (Zeiler & Fergus 2013) and ``guided_backprop`` (Springenberg et al. 2014):
  the backward pass with the ReLU rule swapped (see graph/backward).
- ``grad_cam`` (Selvaraju et al. 2016) at ``layer``: channel weights = spatial mean of the
  layer gradient; ReLU of the weighted sum of the layer's maps (``layer_map``); bilinearly
  upsampled to the input and min–max scaled to [0, 1] (as pytorch-grad-cam).
  ``guided_grad_cam``: guided backprop × Grad-CAM upsampled by nearest neighbour (as Captum's
  GuidedGradCam).
- ``integrated_gradients`` (Sundararajan et al. 2017): (x − baseline) · ∫ gradient along the
  straight path, by Gauss–Legendre quadrature (default, as Captum) or Riemann rules.
- ``smoothgrad`` (Smilkov et al. 2017): the mean gradient over ``samples`` noisy copies, noise
  σ = ``noise`` · (max − min of each input).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from convscope.choices import parse
from convscope.errors import InvalidArgument
from convscope.graph.backward.zero_paths import gradient_blockers
from convscope.limits import check_count
from convscope.methods.gradients import Gradients, Score, backward_call_size, gradients, resolve_score
from convscope.model.preprocessing import tiled_others
from convscope.model.types import ModelRecord
from convscope.runtime.context import MethodContext
from convscope_client.choices import AttributionMethod, IntegrationRule, Rectifier, RectifierScope

CAM_EPSILON = 1e-7


INTEGRATION_RULES = IntegrationRule.values()


@dataclass(frozen=True)
class AttributionOptions:
    output: str | None = None
    target: int | Sequence[int] | np.ndarray | None = None  # a float array: weights (gradients.Score)
    layer: str | None = None
    steps: int = 50
    baseline: float | np.ndarray = 0.0
    integration: IntegrationRule = IntegrationRule.GAUSS_LEGENDRE
    samples: int = 25
    noise: float = 0.15
    seed: int = 0
    rectifiers: RectifierScope = RectifierScope.ALL
    # The model's other inputs by name, fed as given; ``wrt``: the input the map is taken with
    # respect to (default: the image input), its values in ``others``.
    others: Mapping[str, np.ndarray] = field(default_factory=dict)
    wrt: str | None = None

    def __post_init__(self) -> None:
        # Plain strings from Python callers become members here, as the request's do in rpc/convert.py.
        object.__setattr__(self, "integration", parse(IntegrationRule, self.integration))
        object.__setattr__(self, "rectifiers", parse(RectifierScope, self.rectifiers))


@dataclass(frozen=True)
class AttributionResult:
    method: AttributionMethod
    map: np.ndarray  # input-shaped, or [N, H, W] for saliency / grad_cam
    score: Score
    scores: np.ndarray  # [N]
    layer_map: np.ndarray | None = None  # grad_cam before upsampling, [N, h, w]
    layer: str | None = None  # where grad_cam was taken
    warnings: tuple[str, ...] = ()  # why a map is all zero (zero_map_warnings)
    # For image inputs: the first sample's map (channels reduced) on the image as sent, [H, W].
    map_on_image: np.ndarray | None = None


def channel_axis(record: ModelRecord) -> int:
    return 1 if record.preprocessing.layout == "NCHW" else -1


def spatial_size(record: ModelRecord, batch: np.ndarray) -> tuple[int, int]:
    return (batch.shape[2], batch.shape[3]) if channel_axis(record) == 1 else (batch.shape[1], batch.shape[2])


def _plain(context, record, batch, score, options, rectifier=Rectifier.PLAIN):  # type: ignore[no-untyped-def]
    return gradients(
        context,
        record,
        batch,
        score,
        rectifier=rectifier,
        rectifiers=options.rectifiers,
        others=options.others,
        wrt_input=options.wrt,
    )


def gradient(
    context: MethodContext, record: ModelRecord, batch: np.ndarray, score: Score, options: AttributionOptions
) -> AttributionResult:
    result = _plain(context, record, batch, score, options)
    return AttributionResult(AttributionMethod.GRADIENT, result.input, result.score, result.scores)


def saliency(
    context: MethodContext, record: ModelRecord, batch: np.ndarray, score: Score, options: AttributionOptions
) -> AttributionResult:
    result = _plain(context, record, batch, score, options)
    return AttributionResult(
        AttributionMethod.SALIENCY, np.abs(result.input).max(axis=channel_axis(record)), result.score, result.scores
    )


def input_x_gradient(
    context: MethodContext, record: ModelRecord, batch: np.ndarray, score: Score, options: AttributionOptions
) -> AttributionResult:
    result = _plain(context, record, batch, score, options)
    return AttributionResult(AttributionMethod.INPUT_X_GRADIENT, batch * result.input, result.score, result.scores)


def deconvnet(
    context: MethodContext, record: ModelRecord, batch: np.ndarray, score: Score, options: AttributionOptions
) -> AttributionResult:
    result = _plain(context, record, batch, score, options, Rectifier.DECONVNET)
    return AttributionResult(AttributionMethod.DECONVNET, result.input, result.score, result.scores)


def guided_backprop(
    context: MethodContext, record: ModelRecord, batch: np.ndarray, score: Score, options: AttributionOptions
) -> AttributionResult:
    result = _plain(context, record, batch, score, options, Rectifier.GUIDED)
    return AttributionResult(AttributionMethod.GUIDED_BACKPROP, result.input, result.score, result.scores)


def default_cam_layer(record: ModelRecord) -> str:
    """The last feature map with a spatial extent: where Grad-CAM is usually taken."""
    for layer in reversed(record.layers):
        if len(layer.shape) != 4 or not np.issubdtype(np.dtype(layer.dtype), np.floating):
            continue
        _, rows, columns = record.feature_axes(layer.tensor)
        if min(layer.shape[rows], layer.shape[columns]) > 1:
            return layer.tensor
    raise InvalidArgument("the model has no 4-D feature map for Grad-CAM; name one with `layer`")


def _cam(
    context: MethodContext, record: ModelRecord, batch: np.ndarray, score: Score, layer: str, options: AttributionOptions
) -> tuple[np.ndarray, Gradients]:
    shape = record.layer(layer).shape
    if len(shape) != 4:
        raise InvalidArgument(f"Grad-CAM needs a 4-D feature map; {layer!r} has shape {list(shape)}")
    result = gradients(context, record, batch, score, wrt=[layer], keep=[layer], others=options.others, wrt_input=options.wrt)
    order = (0, *record.feature_axes(layer))
    activation, grad = result.kept[layer].transpose(order), result.wrt[layer].transpose(order)
    weights = grad.mean(axis=(2, 3), keepdims=True)
    return np.maximum((weights * activation).sum(axis=1), 0), result


def resize_maps(maps: np.ndarray, size: tuple[int, int], *, mode: str) -> np.ndarray:
    """[N, h, w] → [N, H, W]. "nearest" indexes like torch's F.interpolate (floor(i·h/H));
    "bilinear" uses half-pixel centres (align_corners=False)."""
    height, width = size
    if mode == "nearest":
        rows = np.floor(np.arange(height) * (maps.shape[1] / height)).astype(int)
        cols = np.floor(np.arange(width) * (maps.shape[2] / width)).astype(int)
        return maps[:, rows][:, :, cols]
    return np.stack(
        [
            np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BILINEAR))
            for m in maps
        ]
    )


def grad_cam(
    context: MethodContext, record: ModelRecord, batch: np.ndarray, score: Score, options: AttributionOptions
) -> AttributionResult:
    layer = record.tensor(options.layer) if options.layer else default_cam_layer(record)
    cam, result = _cam(context, record, batch, score, layer, options)
    upsampled = resize_maps(cam, spatial_size(record, batch), mode="bilinear")
    # As pytorch-grad-cam's scale_cam_image: each map min–max scaled to [0, 1], same epsilon.
    upsampled -= upsampled.min(axis=(1, 2), keepdims=True)
    upsampled /= CAM_EPSILON + upsampled.max(axis=(1, 2), keepdims=True)
    return AttributionResult(AttributionMethod.GRAD_CAM, upsampled, result.score, result.scores, layer_map=cam, layer=layer)


def guided_grad_cam(
    context: MethodContext, record: ModelRecord, batch: np.ndarray, score: Score, options: AttributionOptions
) -> AttributionResult:
    layer = record.tensor(options.layer) if options.layer else default_cam_layer(record)
    cam, result = _cam(context, record, batch, score, layer, options)
    guided = _plain(context, record, batch, result.score, options, Rectifier.GUIDED).input  # the same targets
    upsampled = resize_maps(cam, spatial_size(record, batch), mode="nearest")
    upsampled = upsampled[:, None] if channel_axis(record) == 1 else upsampled[..., None]
    return AttributionResult(
        AttributionMethod.GUIDED_GRAD_CAM, guided * upsampled, result.score, result.scores, layer_map=cam, layer=layer
    )


def integration_rule(rule: IntegrationRule, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) along the path, as Captum's approximation methods define them."""
    if rule is IntegrationRule.GAUSS_LEGENDRE:
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (1 + nodes), 0.5 * weights
    if steps < 2:  # one point is no Riemann sum (the trapezoid would halve it); Captum refuses too
        raise InvalidArgument(f"integration {rule.value!r} needs at least 2 steps, got {steps}")
    weights = np.full(steps, 1 / steps)
    if rule is IntegrationRule.RIEMANN_TRAPEZOID:
        weights[[0, -1]] /= 2
        return np.linspace(0, 1, steps), weights
    alphas = {
        IntegrationRule.RIEMANN_LEFT: np.linspace(0, 1 - 1 / steps, steps),
        IntegrationRule.RIEMANN_MIDDLE: np.linspace(1 / (2 * steps), 1 - 1 / (2 * steps), steps),
        IntegrationRule.RIEMANN_RIGHT: np.linspace(1 / steps, 1, steps),
    }
    return alphas[rule], weights


def weighted_gradient_sum(
    context: MethodContext,
    record: ModelRecord,
    batch: np.ndarray,
    score: Score,
    copies: Iterator[np.ndarray],
    weights: np.ndarray,
    options: AttributionOptions,
) -> np.ndarray:
    """Σ_k weights[k] · ∇score(copy k) for copies of ``batch`` (IG path points, noisy samples).

    ``copies`` yields chunks [k, N, ...]; only one chunk and its gradients are alive at a time,
    so memory stays within the batch budget however many steps or samples are asked for.
    """
    total = np.zeros(batch.shape, np.float64)
    done = 0
    for chunk in copies:
        count = len(chunk)
        others = tiled_others(record, options.others, count)
        grads = gradients(
            context, record, chunk.reshape(-1, *batch.shape[1:]), score.tiled(count), others=others, wrt_input=options.wrt
        ).input
        total += np.tensordot(weights[done : done + count], grads.reshape(count, *batch.shape).astype(np.float64), axes=1)
        done += count
    return total


def copies_per_chunk(context: MethodContext, record: ModelRecord, batch: np.ndarray, count: int) -> int:
    return max(1, min(count, backward_call_size(context, record) // len(batch)))


def integrated_gradients(
    context: MethodContext, record: ModelRecord, batch: np.ndarray, score: Score, options: AttributionOptions
) -> AttributionResult:
    check_count(options.steps, context.limits.max_path_points, "steps", "--max-path-points")
    baseline = np.asarray(options.baseline, batch.dtype)
    try:
        baseline = np.broadcast_to(baseline, batch.shape)
    except ValueError:
        raise InvalidArgument(
            f"baseline of shape {list(baseline.shape)} does not fit inputs of shape {list(batch.shape)}"
        ) from None
    alphas, weights = integration_rule(options.integration, options.steps)
    delta = batch - baseline
    step = copies_per_chunk(context, record, batch, len(alphas))
    path = (
        baseline[None] + alphas[start : start + step].astype(batch.dtype).reshape(-1, *[1] * batch.ndim) * delta[None]
        for start in range(0, len(alphas), step)
    )
    score, scores = scored_at_input(context, record, batch, score, options)
    integral = weighted_gradient_sum(context, record, batch, score, path, weights, options)
    return AttributionResult(AttributionMethod.INTEGRATED_GRADIENTS, (delta * integral).astype(batch.dtype), score, scores)


def scored_at_input(
    context: MethodContext, record: ModelRecord, batch: np.ndarray, score: Score, options: AttributionOptions
) -> tuple[Score, np.ndarray]:
    """``score`` with its default targets found (each sample's top entry at the input, not at
    each path point or noisy copy), and the scores at the input: one forward pass for both."""
    feeds = {**options.others, (options.wrt or record.input.name): batch}
    image = feeds.pop(record.input.name)
    values = context.forward(record, image, [score.tensor], others=feeds)[score.tensor]
    if score.targets is None:
        score = Score(score.tensor, values.reshape(len(batch), -1).argmax(axis=1).astype(np.int64))
    return score, score.of(values)


def smoothgrad_noise(
    batch: np.ndarray, samples: int, noise: float, seed: int, *, chunk: int | None = None
) -> Iterator[np.ndarray]:
    """The noise draw in chunks of [≤ chunk, N, ...]: σ_n = noise · (max − min) of sample n.

    Chunks come from one generator in order, so they concatenate to the same draw whatever the
    chunk size (tests rely on that to hand Captum the identical noise).
    """
    flat = batch.reshape(len(batch), -1)
    sigma = (noise * (flat.max(axis=1) - flat.min(axis=1))).astype(batch.dtype).reshape(1, -1, *[1] * (batch.ndim - 1))
    rng = np.random.default_rng(seed)
    chunk = chunk or samples
    for start in range(0, samples, chunk):
        yield rng.standard_normal((min(chunk, samples - start), *batch.shape)).astype(batch.dtype) * sigma


def smoothgrad(
    context: MethodContext, record: ModelRecord, batch: np.ndarray, score: Score, options: AttributionOptions
) -> AttributionResult:
    check_count(options.samples, context.limits.max_path_points, "samples", "--max-path-points")
    if options.noise < 0:
        raise InvalidArgument(f"noise must be ≥ 0, got {options.noise}")
    chunk = copies_per_chunk(context, record, batch, options.samples)
    noisy = (batch[None] + noise for noise in smoothgrad_noise(batch, options.samples, options.noise, options.seed, chunk=chunk))
    weights = np.full(options.samples, 1 / options.samples)
    score, scores = scored_at_input(context, record, batch, score, options)
    mean = weighted_gradient_sum(context, record, batch, score, noisy, weights, options)
    return AttributionResult(AttributionMethod.SMOOTHGRAD, mean.astype(batch.dtype), score, scores)


Method = Callable[[MethodContext, ModelRecord, np.ndarray, Score, AttributionOptions], AttributionResult]
ATTRIBUTION_METHODS: dict[AttributionMethod, Method] = {
    AttributionMethod.GRADIENT: gradient,
    AttributionMethod.SALIENCY: saliency,
    AttributionMethod.INPUT_X_GRADIENT: input_x_gradient,
    AttributionMethod.DECONVNET: deconvnet,
    AttributionMethod.GUIDED_BACKPROP: guided_backprop,
    AttributionMethod.GRAD_CAM: grad_cam,
    AttributionMethod.GUIDED_GRAD_CAM: guided_grad_cam,
    AttributionMethod.INTEGRATED_GRADIENTS: integrated_gradients,
    AttributionMethod.SMOOTHGRAD: smoothgrad,
}


def attribution(
    context: MethodContext, record: ModelRecord, batch: np.ndarray, method: AttributionMethod | str, options: AttributionOptions
) -> AttributionResult:
    method = parse(AttributionMethod, method)
    # A default target (None) is found where the method scores: inside the one backward run,
    # or by integrated gradients and SmoothGrad at the input (scored_at_input).
    score = resolve_score(record, len(batch), output=options.output, target=options.target)
    if options.wrt is not None and options.wrt != record.input.name:
        if options.wrt not in options.others:
            raise InvalidArgument(f"wrt {options.wrt!r} is none of the model's inputs {[spec.name for spec in record.inputs]}")
        others = {record.input.name: batch, **{name: value for name, value in options.others.items() if name != options.wrt}}
        batch, options = options.others[options.wrt], dataclasses.replace(options, others=others)
        if not np.issubdtype(batch.dtype, np.floating):
            raise InvalidArgument(f"wrt {options.wrt!r} takes {batch.dtype}: only float inputs have gradients")
    result = ATTRIBUTION_METHODS[method](context, record, batch, score, options)
    warnings = zero_map_warnings(context, record, result, options.wrt or record.input.name)
    return dataclasses.replace(result, warnings=warnings)


def zero_map_warnings(context: MethodContext, record: ModelRecord, result: AttributionResult, source: str) -> tuple[str, ...]:
    """Say so where a sample's map is all zero, naming the nodes that stop every gradient path
    from the input to the score when that is why (graph/backward/zero_paths.py)."""
    zero = [n for n, sample in enumerate(result.map) if not np.any(sample)]
    if not zero:
        return ()
    base = context.runtime.base_graph(record.id, dynamic_batch=record.dynamic_batch)
    blockers = gradient_blockers(base, source, result.score.tensor)
    which = "every sample's map is" if len(zero) == len(result.map) else f"the maps of samples {zero} are"
    if blockers:
        named = ", ".join(f"{node.op_type} {node.name!r}" for node in blockers[:8])
        more = f" and {len(blockers) - 8} more" if len(blockers) > 8 else ""
        return (
            f"{which} all zero: every gradient path from {source!r} to {result.score.tensor!r} passes through "
            f"{named}{more}, whose derivative is zero almost everywhere",
        )
    return (
        f"{which} all zero, though {result.score.tensor!r} depends differentiably on the input: the score is flat "
        "here (e.g. every unit on its path is switched off, or the target entry ignores this input)",
    )
