"""Per-image attributes computed from what the model sees (Russakovsky et al. 2015 §6.3 plot
accuracy against such properties): brightness, contrast, colourfulness, sharpness, and the stored
image's size and aspect ratio."""

from __future__ import annotations

import numpy as np

COMPUTED = ("brightness", "contrast", "colourfulness", "sharpness")
FROM_FILE = ("size", "aspect_ratio")


def luminance(picture: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an H×W×3 uint8 picture, in [0, 1]."""
    return picture.astype(np.float32) @ np.float32([0.299, 0.587, 0.114]) / np.float32(255)


def measure(picture: np.ndarray) -> dict[str, float]:
    """brightness: mean luma; contrast: its standard deviation; colourfulness: Hasler & Süsstrunk
    (2003) on 0..255 values; sharpness: variance of the 4-neighbour Laplacian of the luma."""
    luma = luminance(picture)
    rgb = picture.astype(np.float32)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = (rgb[..., 0] + rgb[..., 1]) / 2 - rgb[..., 2]
    colourfulness = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    laplacian = luma[1:-1, :-2] + luma[1:-1, 2:] + luma[:-2, 1:-1] + luma[2:, 1:-1] - 4 * luma[1:-1, 1:-1]
    return {
        "brightness": float(luma.mean()),
        "contrast": float(luma.std()),
        "colourfulness": float(colourfulness),
        "sharpness": float(laplacian.var()) if laplacian.size else 0.0,
    }


def from_size(width: int, height: int) -> dict[str, float]:
    """size: √(width·height) of the stored image, in pixels; aspect ratio: width / height."""
    return {"size": float(np.sqrt(width * height)), "aspect_ratio": width / height}
