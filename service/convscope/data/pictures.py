"""Pictures of dataset items: a tensor item drawn as an image (its preprocessing undone), and
downscaled copies of the pictures a job streams by, kept for the figures drawn from its result
(``render/dataset_figures.py``) while the images themselves are dropped."""

from __future__ import annotations

import numpy as np
from PIL import Image

from convscope.model.types import ModelRecord
from convscope_client.choices import ChannelOrder, Layout


def shrink(picture: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """The picture with its longer side at most ``side`` (bilinear), and the scale applied."""
    longest = max(picture.shape[:2])
    if longest <= side:
        return picture, 1.0
    scale = side / longest
    size = (max(1, round(picture.shape[1] * scale)), max(1, round(picture.shape[0] * scale)))
    return np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BILINEAR)), scale


def to_unit(values: np.ndarray, *, symmetric: bool = False) -> np.ndarray:
    """Scale to [0, 1]: min–max, or around zero (0.5 = 0) for signed quantities like weights."""
    values = np.nan_to_num(values.astype(np.float32))
    if symmetric:
        bound = float(np.abs(values).max())
        return 0.5 + 0.5 * values / bound if bound > 0 else np.full_like(values, 0.5)
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def picture_from_sample(record: ModelRecord, value: np.ndarray) -> np.ndarray | None:
    """A tensor sample drawn as an image: the model's preprocessing undone (scale, mean, std);
    min–max scaled when that does not land in 0..255. None when it is not image-shaped."""
    spec = record.preprocessing
    if value.ndim != 3 or not np.issubdtype(value.dtype, np.number):
        return None
    pixels = value.transpose(1, 2, 0) if spec.layout is Layout.NCHW else value
    if pixels.shape[2] not in (1, 3):
        return None
    pixels = pixels.astype(np.float32)
    if spec.std:
        pixels = pixels * np.asarray(spec.std, np.float32)[: pixels.shape[2]]
    if spec.mean:
        pixels = pixels + np.asarray(spec.mean, np.float32)[: pixels.shape[2]]
    pixels = pixels / np.float32(spec.scale)
    if spec.channel_order is ChannelOrder.BGR:
        pixels = pixels[..., ::-1]
    finite = np.nan_to_num(pixels)
    if finite.min() < -1 or finite.max() > 256:
        finite = to_unit(finite) * 255
    picture = finite.round().clip(0, 255).astype(np.uint8)
    return np.repeat(picture, 3, axis=2) if picture.shape[2] == 1 else np.ascontiguousarray(picture)
