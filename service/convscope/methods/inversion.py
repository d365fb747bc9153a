"""Inverting a representation (Mahendran & Vedaldi, CVPR 2015): find an image x whose code
Φ(x) at ``layer`` matches the code Φ₀ of a given image.

    loss = ‖Φ(x) − Φ₀‖² / ‖Φ₀‖²  +  λ_α · R_α(x)  +  λ_V · R_TV(x)

x lives in pixel space p ∈ [0, 1] (the model's normalization applied when it is fed); u = p − ½.
The paper's normalized regularizers, with its constants carried over from its ±128 pixel scale
(B = 80 → 80/255, V = B/6.5): R_α = Σ|u|^α / (HW·B^α), α = 6, bounds the range;
R_TV = Σ (∂ₓu² + ∂ᵧu²)^{β/2} / (HW·V^β), β = 2, prefers piecewise-smooth images.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from convscope.choices import parse
from convscope.errors import InvalidArgument
from convscope.graph.loss_seed import rule_input_names
from convscope.methods.optimize import Adam, Objective, PixelSpace, StepProgress, check_steps, float_layer, loss_gradient
from convscope.model.preprocessing import ModelInput
from convscope.model.types import ModelRecord
from convscope.runtime.context import MethodContext
from convscope_client.choices import InversionStart

ALPHA = 6
NORM_SCALE = 80 / 255  # B
TV_SCALE = NORM_SCALE / 6.5  # V


@dataclass(frozen=True)
class InversionOptions:
    layer: str
    steps: int = 200
    lr: float = 0.02  # Adam's step in pixel units
    tv_weight: float = 0.005  # λ_V
    norm_weight: float = 0.01  # λ_α
    jitter: int = 0  # the view is rolled by up to this many pixels each step
    init: InversionStart | str = InversionStart.NOISE
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "init", parse(InversionStart, self.init))  # a Python caller's string: its member


@dataclass(frozen=True)
class InversionResult:
    array: np.ndarray  # model input [N, ...]
    pictures: np.ndarray  # [N, H, W, 3] uint8
    code_error: np.ndarray  # [N] ‖Φ(x) − Φ₀‖² / ‖Φ₀‖² at the result
    history: np.ndarray  # [steps, 2]: batch-mean loss and code error at each step's iterate
    layer: str


def total_variation(pixels: np.ndarray, axes: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per sample Σ(∂ₓp² + ∂ᵧp²), and its gradient (β = 2)."""
    value = np.zeros(len(pixels))
    gradient = np.zeros_like(pixels)
    for axis in axes:
        difference = np.diff(pixels, axis=axis)
        value += (difference**2).reshape(len(pixels), -1).sum(axis=1)
        pad = [(0, 0)] * pixels.ndim
        pad[axis] = (1, 0)
        ahead = np.pad(difference, pad)  # p[i] − p[i−1] at i, 0 at the first
        pad[axis] = (0, 1)
        behind = np.pad(difference, pad)  # p[i+1] − p[i] at i, 0 at the last
        gradient += 2 * (ahead - behind)
    return value, gradient


def invert(
    context: MethodContext, record: ModelRecord, model_input: ModelInput, options: InversionOptions, *, max_steps: int
) -> Iterator[StepProgress | InversionResult]:
    check_steps(options.steps, max_steps)
    if options.lr <= 0 or options.tv_weight < 0 or options.norm_weight < 0 or options.jitter < 0:
        raise InvalidArgument("lr must be > 0, and tv_weight, norm_weight and jitter ≥ 0")
    float_layer(record, options.layer)
    space = PixelSpace.of(record)
    batch = model_input.batch
    code = context.forward(record, batch, [options.layer])[options.layer]
    energy = np.maximum((code.reshape(len(code), -1).astype(np.float64) ** 2).sum(axis=1), 1e-12)
    reference, weight = rule_input_names(options.layer, "residual")
    weights = (2 / energy).astype(np.float32).reshape(-1, *[1] * (code.ndim - 1))
    objective = Objective(options.layer, "residual", {reference: code, weight: weights})
    rng = np.random.default_rng(options.seed)
    pixels = np.full(batch.shape, 0.5, np.float32)
    if options.init is InversionStart.NOISE:
        pixels += (0.1 * rng.standard_normal(batch.shape)).astype(np.float32)
    axes = space.spatial_axes
    area = batch.shape[axes[0]] * batch.shape[axes[1]]
    optimizer = Adam(options.lr)
    history = []
    for step in range(options.steps):
        shift = tuple(rng.integers(-options.jitter, options.jitter + 1, 2)) if options.jitter else (0, 0)
        values, gradient = loss_gradient(context, record, space.to_input(np.roll(pixels, shift, axes)), objective)
        gradient = np.roll(space.input_gradient_to_pixels(gradient), (-shift[0], -shift[1]), axes)
        error = ((values - code).reshape(len(code), -1).astype(np.float64) ** 2).sum(axis=1) / energy
        centred = pixels - 0.5
        norm = (np.abs(centred) ** ALPHA).reshape(len(pixels), -1).sum(axis=1) / (area * NORM_SCALE**ALPHA)
        tv, tv_gradient = total_variation(centred, axes)
        gradient = gradient + options.norm_weight * ALPHA * centred ** (ALPHA - 1) / (area * NORM_SCALE**ALPHA)
        gradient = gradient + options.tv_weight * tv_gradient / (area * TV_SCALE**2)
        loss = error + options.norm_weight * norm + options.tv_weight * tv / (area * TV_SCALE**2)
        pixels = np.clip(optimizer.step(pixels, gradient.astype(np.float32)), 0, 1)
        history.append((float(loss.mean()), float(error.mean())))
        yield StepProgress(step + 1, options.steps, history[-1][0])
    array = space.to_input(pixels)
    final = context.forward(record, array, [options.layer])[options.layer]
    code_error = ((final - code).reshape(len(code), -1).astype(np.float64) ** 2).sum(axis=1) / energy
    yield InversionResult(array, space.pictures(pixels), code_error, np.array(history), options.layer)
