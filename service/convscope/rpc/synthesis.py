"""Protobuf ↔ domain types of the RPCs of images made by gradients (Invert, Visualize,
Adversarial, Correspondence), and the loop that streams progress and stops when the call ends."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np

from convscope.errors import Cancelled, InvalidArgument
from convscope.methods.correspondence import CorrespondenceResult
from convscope.methods.optimize import StepProgress, top_classes
from convscope.methods.synthesis import (
    AdversarialOptions,
    AdversarialResult,
    InversionOptions,
    InversionResult,
    VisualizationOptions,
    VisualizationResult,
)
from convscope.model.preprocessing import ModelInput
from convscope.model.types import ModelRecord
from convscope.render import encode_png
from convscope.render.synthesis import adversarial_panel, captioned_row, match_lines, prediction_lines
from convscope.rpc.convert import floats, given
from convscope_client._proto import convscope_pb2 as pb
from convscope_client.inputs import fill_tensor

log = logging.getLogger(__name__)


def stream_steps(
    what: str, events: Iterator[Any], context: grpc.ServicerContext, event_type: Any, result: Callable[[Any], Any]
) -> Iterator[Any]:
    """Progress events, then the converted result; checks the call before every step (each
    step runs only when the next event is pulled), so a cancelled call stops within one."""
    done = total = 0
    try:
        for event in iter_until_inactive(events, context, what):
            if isinstance(event, StepProgress):
                done, total = event.step, event.steps
                yield event_type(progress=pb.OptimizationProgress(step=event.step, steps=event.steps, loss=event.loss))
            else:
                yield event_type(result=result(event))
    except (Cancelled, GeneratorExit):  # GeneratorExit: grpc dropped the stream of a dead call
        log.info("%s stopped after %d of %d steps: call cancelled or past its deadline", what, done, total)
        raise
    finally:
        events.close()


def iter_until_inactive(events: Iterator[Any], context: grpc.ServicerContext, what: str) -> Iterator[Any]:
    while True:
        if not context.is_active():
            raise Cancelled(f"{what} cancelled (by the client or its deadline)")
        event = next(events, None)
        if event is None:
            return
        yield event


def inversion_options(request: pb.InvertRequest) -> InversionOptions:
    if not request.layer:
        raise InvalidArgument("name the layer whose code is inverted")
    return InversionOptions(
        layer=request.layer,
        jitter=request.jitter,
        seed=request.seed,
        **given(steps=request.steps, init=request.init),
        **{name: getattr(request, name) for name in ("lr", "tv_weight", "norm_weight") if request.HasField(name)},
    )


def inversion_result(result: InversionResult, model_input: ModelInput) -> pb.InversionResult:
    pairs = [picture for original, inverted in zip(model_input.pictures, result.pictures) for picture in (original, inverted)]
    captions = [text for error in result.code_error for text in ("original", f"inverted, code error {error:.3f}")]
    message = pb.InversionResult(
        png=encode_png(captioned_row(pairs, captions)) if pairs else b"",
        code_error=floats(result.code_error),
        layer=result.layer,
    )
    fill_tensor(message.images, result.pictures)
    fill_tensor(message.array, result.array)
    fill_tensor(message.history, result.history.astype(np.float32))
    return message


def visualization_options(request: pb.VisualizeRequest) -> VisualizationOptions:
    targets = list(request.targets)
    return VisualizationOptions(
        target=None if not targets else targets[0] if len(targets) == 1 else targets,
        layer=request.layer or None,
        channel=request.channel if request.HasField("channel") else None,
        seed=request.seed,
        **given(steps=request.steps, batch=request.batch),
        **{
            name: getattr(request, name)
            for name in ("lr", "l2", "blur_every", "blur_sigma", "jitter", "norm_percentile")
            if request.HasField(name)
        },
    )


def visualization_result(result: VisualizationResult, record: ModelRecord) -> pb.VisualizationResult:
    targets = [int(t) for t in result.targets]
    labels = record.target_labels(result.tensor, targets) if result.probabilities is not None else ("",) * len(targets)
    if result.probabilities is not None:
        captions = [f"{label or target}: {p:.1%}"[:40] for target, label, p in zip(targets, labels, result.probabilities)]
    else:
        captions = [f"channel {target}: mean {score:.2f}" for target, score in zip(targets, result.scores)]
    message = pb.VisualizationResult(
        png=encode_png(captioned_row(list(result.pictures), captions)),
        scores=floats(result.scores),
        probabilities=floats(result.probabilities) if result.probabilities is not None else [],
        targets=targets,
        target_labels=list(labels),
        tensor=result.tensor,
    )
    fill_tensor(message.images, result.pictures)
    fill_tensor(message.array, result.array)
    fill_tensor(message.score_history, result.score_history.astype(np.float32))
    return message


def adversarial_options(request: pb.AdversarialRequest) -> AdversarialOptions:
    if request.bounds and len(request.bounds) != 2:
        raise InvalidArgument(f"bounds are [low, high], got {len(request.bounds)} numbers")
    return AdversarialOptions(
        target=request.target if request.HasField("target") else None,
        random_start=request.random_start,
        seed=request.seed,
        bounds=(request.bounds[0], request.bounds[1]) if request.bounds else None,
        **given(method=request.method, steps=request.steps, norm=request.norm),
        **{name: getattr(request, name) for name in ("epsilon", "step_size") if request.HasField(name)},
    )


def predictions(record: ModelRecord, logits: np.ndarray) -> list[pb.Prediction]:
    classes, probabilities = top_classes(logits)
    return [
        pb.Prediction(
            classes=[int(c) for c in row],
            probabilities=floats(p),
            labels=list(record.target_labels(record.outputs[0].name, row.tolist())),
        )
        for row, p in zip(classes, probabilities)
    ]


def adversarial_result(result: AdversarialResult, record: ModelRecord) -> pb.AdversarialResult:
    before, after = predictions(record, result.logits), predictions(record, result.adversarial_logits)
    png = b""
    if result.pictures is not None and result.original_pictures is not None:
        panels = [
            adversarial_panel(
                original,
                changed,
                prediction_lines(was.labels or [str(c) for c in was.classes], was.probabilities),
                prediction_lines(now.labels or [str(c) for c in now.classes], now.probabilities),
                float(linf),
            )
            for original, changed, was, now, linf in zip(result.original_pictures, result.pictures, before, after, result.linf)
        ]
        png = encode_png(np.concatenate(panels, axis=0))
    message = pb.AdversarialResult(
        png=png,
        prediction=before,
        adversarial_prediction=after,
        success=[bool(s) for s in result.success],
        linf=floats(result.linf),
        l2=floats(result.l2),
        label=[int(c) for c in result.label],
    )
    if result.pictures is not None:
        fill_tensor(message.images, result.pictures)
    fill_tensor(message.array, result.array)
    return message


def correspondence_response(result: CorrespondenceResult) -> pb.CorrespondenceResponse:
    png = b""
    if len(result.pictures) == 2:
        first, second = result.geometries
        png = encode_png(
            match_lines(
                *result.pictures,
                first.to_picture(result.points),
                second.to_picture(result.matches),
                result.similarity,
                result.mirrored,
            )
        )
    message = pb.CorrespondenceResponse(
        png=png, similarity=floats(result.similarity), layers=list(result.layers), mirrored=[bool(m) for m in result.mirrored]
    )
    fill_tensor(message.points, result.points.astype(np.float32))
    fill_tensor(message.matches, result.matches.astype(np.float32))
    return message


def correspondence_layers(request: pb.CorrespondenceRequest) -> list[str]:
    layers = list(request.layers)
    if len(layers) > 1 and not request.hypercolumn:
        raise InvalidArgument(f"{len(layers)} layers make a hypercolumn: set hypercolumn, or name one layer")
    return layers
