"""Client side of the optimization RPCs: run a stream, report progress, convert the result."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from convscope_client._proto import convscope_pb2 as pb
from convscope_client.errors import ConvscopeError, streaming
from convscope_client.inputs import from_tensor
from convscope_client.types import Adversarial, Inversion, Prediction, Synthesis

StepCallback = Callable[[int, int, float], None]  # (step, steps, loss)


def final_result(call: Iterator[Any], progress: StepCallback | None, what: str) -> Any:
    """The result of a stream of progress events and one result; ``progress(step, steps, loss)``
    per step (if it raises, or on Ctrl-C, the call is cancelled and the server stops)."""
    result = None
    with streaming(call) as events:
        for event in events:
            if event.HasField("progress"):
                if progress is not None:
                    progress(event.progress.step, event.progress.steps, event.progress.loss)
            else:
                result = event.result
    if result is None:
        raise ConvscopeError(grpc.StatusCode.INTERNAL, f"the server ended the {what} stream without a result")
    return result


def _one_or_all(values: list[Any], batch: int) -> Any:
    return values[0] if batch == 1 else values


def inversion(result: pb.InversionResult) -> Inversion:
    images = from_tensor(result.images)
    return Inversion(
        image=images[0] if len(images) == 1 else images,
        array=from_tensor(result.array),
        png=result.png,
        code_error=_one_or_all(list(result.code_error), len(images)),
        history=from_tensor(result.history),
        layer=result.layer,
    )


def synthesis(result: pb.VisualizationResult) -> Synthesis:
    return Synthesis(
        images=from_tensor(result.images),
        array=from_tensor(result.array),
        png=result.png,
        score_history=from_tensor(result.score_history),
        scores=list(result.scores),
        probabilities=list(result.probabilities),
        targets=list(result.targets),
        target_labels=list(result.target_labels),
        tensor=result.tensor,
    )


def _prediction(message: pb.Prediction) -> Prediction:
    return Prediction(list(message.classes), list(message.probabilities), list(message.labels))


def adversarial(result: pb.AdversarialResult) -> Adversarial:
    batch = len(result.success)
    images = from_tensor(result.images) if result.HasField("images") else None
    return Adversarial(
        image=images[0] if images is not None and batch == 1 else images,
        array=from_tensor(result.array),
        png=result.png,
        prediction=_one_or_all([_prediction(p) for p in result.prediction], batch),
        adversarial_prediction=_one_or_all([_prediction(p) for p in result.adversarial_prediction], batch),
        success=_one_or_all(list(result.success), batch),
        linf=_one_or_all(list(result.linf), batch),
        l2=_one_or_all(list(result.l2), batch),
        label=_one_or_all(list(result.label), batch),
    )
