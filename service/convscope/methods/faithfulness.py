"""Deletion and insertion curves of a saliency map (Petsiuk, Das & Saenko, *RISE*, BMVC 2018).

Deletion removes the most important pixels first (set to 0 in the model's input space) and
records the target's softmax probability after every ``pixels_per_step`` pixels; insertion starts
from a blurred copy and puts the original pixels back in the same order. A faithful map makes
the deletion curve fall fast (low AUC) and the insertion curve rise fast (high AUC). The AUC is
the trapezoid rule over the fraction of pixels changed, as RISE's evaluation code computes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from convscope.choices import parse
from convscope.model.types import ModelRecord
from convscope.runtime.context import MethodContext
from convscope_client.choices import FaithfulnessMetric

DEFAULT_PIXELS_PER_STEP = 0  # 0: about 1/64 of the image per step
DEFAULT_BLUR_SIGMA = 5.0  # input pixels: RISE blurs with an 11-tap Gaussian of σ 5 at 224 px


@dataclass(frozen=True)
class Curves:
    metric: FaithfulnessMetric
    fractions: np.ndarray  # [S+1] share of pixels changed at each step
    scores: np.ndarray  # [N, S+1] target probability per sample and step
    auc: np.ndarray  # [N]


def auc(scores: np.ndarray) -> np.ndarray:
    """Trapezoid area under curves sampled at evenly spaced points of [0, 1] (last axis)."""
    return (scores.sum(-1) - scores[..., 0] / 2 - scores[..., -1] / 2) / (scores.shape[-1] - 1)


def importance(record: ModelRecord, maps: np.ndarray, spatial: tuple[int, int]) -> np.ndarray:
    """[N, H, W] pixel importance: |map| summed over channels for input-shaped maps."""
    if maps.ndim == 3:
        return np.abs(maps)
    return np.abs(maps).sum(axis=1 if record.preprocessing.layout == "NCHW" else -1).reshape(len(maps), *spatial)


def blurred(record: ModelRecord, batch: np.ndarray, sigma: float) -> np.ndarray:
    sigmas = (0, 0, sigma, sigma) if record.preprocessing.layout == "NCHW" else (0, sigma, sigma, 0)
    return ndimage.gaussian_filter(batch.astype(np.float32), sigmas, mode="nearest").astype(batch.dtype)


def curves(
    context: MethodContext,
    record: ModelRecord,
    batch: np.ndarray,
    maps: np.ndarray,
    targets: Sequence[int],
    metrics: Sequence[FaithfulnessMetric | str] = tuple(FaithfulnessMetric),
    *,
    pixels_per_step: int = DEFAULT_PIXELS_PER_STEP,
    blur_sigma: float = DEFAULT_BLUR_SIGMA,
) -> list[Curves]:
    """Deletion and/or insertion curves for each sample of ``batch`` under its map; one forward
    run per sample covers every step of a curve."""
    chosen = [parse(FaithfulnessMetric, metric) for metric in metrics]
    nchw = record.preprocessing.layout == "NCHW"
    spatial = (batch.shape[2], batch.shape[3]) if nchw else (batch.shape[1], batch.shape[2])
    pixels = spatial[0] * spatial[1]
    step = pixels_per_step or max(1, pixels // 64)
    counts = np.append(np.arange(0, pixels, step), pixels)
    ranks = importance(record, maps, spatial).reshape(len(batch), -1)
    output = record.outputs[0].name
    results = []
    for metric in chosen:
        # Changed pixels take their value from ``end``; the others stay as in ``source``.
        source, end = (
            (batch, np.zeros_like(batch))
            if metric is FaithfulnessMetric.DELETION
            else (blurred(record, batch, blur_sigma), batch)
        )
        scores = np.empty((len(batch), len(counts)), np.float64)
        for n in range(len(batch)):
            order = np.argsort(-ranks[n], kind="stable")
            changed = np.zeros((len(counts), pixels), bool)
            for i, count in enumerate(counts):
                changed[i, order[:count]] = True
            mask = changed.reshape(len(counts), 1, *spatial) if nchw else changed.reshape(len(counts), *spatial, 1)
            steps = np.where(mask, end[n : n + 1], source[n : n + 1]).astype(batch.dtype)
            logits = context.forward(record, steps, [output])[output].reshape(len(counts), -1).astype(np.float64)
            probabilities = np.exp(logits - logits.max(1, keepdims=True))
            probabilities /= probabilities.sum(1, keepdims=True)
            scores[n] = probabilities[:, targets[n]]
        results.append(Curves(metric, counts / pixels, scores, auc(scores)))
    return results
