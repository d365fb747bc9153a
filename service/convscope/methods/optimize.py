"""The optimization loop shared by inversion, visualization and adversarial examples.

Each step is one onnxruntime run of a backward graph whose seed dL/dΦ is made in the graph
from Φ's forward value (graph/loss_seed.py): the loss's gradient at the input and Φ itself
come back together.  Everything else — the iterate, the optimizer's moments, regularizers and
projections — is numpy state owned by the method.  Methods are generators that yield a
``StepProgress`` after every step and their result last: work happens only while the caller
pulls, so a cancelled call stops within one step (close the generator).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from convscope.errors import InvalidArgument
from convscope.graph.backward import grad_output_name
from convscope.limits import check_count
from convscope.methods.gradients import run_backward
from convscope.model.types import ModelRecord, Preprocessing
from convscope.runtime.context import MethodContext
from convscope.runtime.graphs import BackwardGraph, LossGraph


@dataclass(frozen=True)
class StepProgress:
    step: int  # steps done
    steps: int  # the budget
    loss: float  # the objective at the iterate this step started from (batch mean)


@dataclass(frozen=True)
class Objective:
    """What one step differentiates: a loss of ``tensor`` whose seed ``rule`` makes in the graph
    (graph/loss_seed.py) from ``feeds``, the rule's batch-first inputs."""

    tensor: str
    rule: str
    feeds: Mapping[str, np.ndarray] = field(default_factory=dict)


def check_steps(steps: int, max_steps: int) -> None:
    check_count(steps, max_steps, "steps", "--max-steps")


def float_layer(record: ModelRecord, tensor: str) -> tuple[int, ...]:
    """The per-sample shape of a float tensor of the layer table (unknown names are refused there)."""
    layer = record.layer(tensor)
    if not np.issubdtype(np.dtype(layer.dtype), np.floating):
        raise InvalidArgument(f"tensor {tensor!r} is {layer.dtype}; only float tensors have gradients")
    return tuple(layer.shape[1:])


def loss_gradient(
    context: MethodContext, record: ModelRecord, batch: np.ndarray, objective: Objective
) -> tuple[np.ndarray, np.ndarray]:
    """(Φ at ``batch``, dL/d input) from one backward run per memory-sized batch."""
    spec = LossGraph(BackwardGraph(seeds=(objective.tensor,), keep=(objective.tensor,)), objective.rule)
    gradient = grad_output_name(record.input.name)
    values = run_backward(context, record, spec, {record.input.name: batch, **objective.feeds}, [objective.tensor, gradient])
    return values[objective.tensor], values[gradient]


@dataclass(frozen=True)
class PixelSpace:
    """Pixels p ∈ [0, 1] (uint8 / 255) in the model's layout, and the model input x = gain·p +
    offset per channel: the model's scale and normalization as an affine map, so a loop can
    step and clip in pixel space and feed the model its own units."""

    spec: Preprocessing
    gain: np.ndarray  # broadcastable to one sample
    offset: np.ndarray

    @classmethod
    def of(cls, record: ModelRecord) -> PixelSpace:
        spec = record.preprocessing
        channels = 1 if spec.grayscale else 3
        shape = (-1, 1, 1) if spec.layout == "NCHW" else (-1,)
        std = np.asarray(spec.std or (1.0,) * channels, np.float32)
        mean = np.asarray(spec.mean or (0.0,) * channels, np.float32)
        return cls(spec, (np.float32(255 * spec.scale) / std).reshape(shape), (-mean / std).reshape(shape))

    @property
    def channel_axis(self) -> int:
        return 1 if self.spec.layout == "NCHW" else -1

    @property
    def spatial_axes(self) -> tuple[int, int]:
        return (-2, -1) if self.spec.layout == "NCHW" else (-3, -2)

    def to_input(self, pixels: np.ndarray) -> np.ndarray:
        return (pixels * self.gain + self.offset).astype(np.float32, copy=False)

    def to_pixels(self, batch: np.ndarray) -> np.ndarray:
        return ((batch - self.offset) / self.gain).astype(np.float32, copy=False)

    def input_gradient_to_pixels(self, gradient: np.ndarray) -> np.ndarray:
        return (gradient * self.gain).astype(np.float32, copy=False)

    def pictures(self, pixels: np.ndarray) -> np.ndarray:
        """[N, …] pixels in the model's layout → [N, H, W, 3] uint8, as the user sees them."""
        values = np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)
        if self.spec.layout == "NCHW":
            values = values.transpose(0, 2, 3, 1)
        if self.spec.channel_order == "BGR":
            values = values[..., ::-1]
        return np.repeat(values, 3, axis=-1) if values.shape[-1] == 1 else np.ascontiguousarray(values)


class Adam:
    """Adam (Kingma & Ba 2015) on a numpy iterate: the step scales itself per pixel, so one
    learning rate fits objectives whose gradients differ by orders of magnitude."""

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr, self.betas, self.eps = lr, betas, eps
        self.moments: tuple[np.ndarray, np.ndarray] | None = None
        self.count = 0

    def step(self, value: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        """``value`` moved to decrease the loss whose gradient is ``gradient``."""
        first, second = self.moments or (np.zeros_like(gradient), np.zeros_like(gradient))
        beta1, beta2 = self.betas
        first = beta1 * first + (1 - beta1) * gradient
        second = beta2 * second + (1 - beta2) * gradient * gradient
        self.moments = (first, second)
        self.count += 1
        corrected = first / (1 - beta1**self.count)
        scale = np.sqrt(second / (1 - beta2**self.count)) + self.eps
        return (value - self.lr * corrected / scale).astype(value.dtype, copy=False)


def top_classes(logits: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the ``k`` most probable classes and their softmax probabilities."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    order = np.argsort(-probabilities, axis=1)[:, :k]
    return order, np.take_along_axis(probabilities, order, axis=1)
