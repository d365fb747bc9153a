"""Common corruptions at three severities, applied to the picture the model sees (after resize),
in the spirit of Hendrycks & Dietterich (ICLR 2019): Gaussian noise, Gaussian blur, brightness,
contrast and JPEG compression. Seeded, so an audit is repeatable."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

# Per corruption, its parameter at severities 1, 2, 3.
SEVERITIES: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.04, 0.08, 0.16),  # σ as a share of the 0..255 range
    "gaussian_blur": (0.5, 1.0, 2.0),  # σ in pixels of the model's input
    "brightness": (0.1, 0.3, 0.5),  # added to every channel, as a share of the range
    "contrast": (0.6, 0.4, 0.2),  # distance from the mean grey scaled by this
    "jpeg": (50, 20, 8),  # JPEG quality
}


def _noise(picture: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return picture + rng.normal(0, sigma * 255, picture.shape)


def _blur(picture: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return ndimage.gaussian_filter(picture.astype(np.float32), (0,) * (picture.ndim - 3) + (sigma, sigma, 0), mode="nearest")


def _brightness(picture: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    return picture + amount * 255


def _contrast(picture: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    mean = picture.astype(np.float32).mean(axis=(-3, -2, -1), keepdims=True)
    return (picture - mean) * factor + mean


def _jpeg(picture: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    if picture.ndim == 4:
        return np.stack([_jpeg(one, quality, rng) for one in picture])
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=int(quality))
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


CORRUPTIONS: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": _noise,
    "gaussian_blur": _blur,
    "brightness": _brightness,
    "contrast": _contrast,
    "jpeg": _jpeg,
}


def corrupt(picture: np.ndarray, corruption: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``picture`` (H×W×3 uint8, or a stack of them: N×H×W×3) corrupted at ``severity`` 1..3, as
    uint8. A stack takes one call per corruption instead of one per picture (on 8×8 digits the
    calls cost more than the arithmetic), with the numbers of corrupting its pictures in turn."""
    changed = CORRUPTIONS[corruption](picture, SEVERITIES[corruption][severity - 1], rng)
    return np.clip(np.round(changed), 0, 255).astype(np.uint8)
