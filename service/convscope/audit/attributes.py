"""Per-image attributes computed from what the model sees (Russakovsky et al. 2015 §6.3 plot
accuracy against such properties): brightness, contrast, colourfulness, sharpness, and the stored
image's size and aspect ratio."""

from __future__ import annotations

import numpy as np

COMPUTED = ("brightness", "contrast", "colourfulness", "sharpness")
FROM_FILE = ("size", "aspect_ratio")


def luminance(pictures: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of […, H, W, 3] uint8 pictures, in [0, 1]."""
    return pictures.astype(np.float32) @ np.float32([0.299, 0.587, 0.114]) / np.float32(255)


def measure(pictures: np.ndarray) -> dict[str, np.ndarray]:
    """Per picture of an [N, H, W, 3] uint8 stack — a batch at once, beside inference:
    brightness: mean luma; contrast: its standard deviation; colourfulness: Hasler & Süsstrunk
    (2003) on 0..255 values; sharpness: variance of the 4-neighbour Laplacian of the luma."""
    luma = luminance(pictures)
    rgb = pictures.astype(np.float32)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = (rgb[..., 0] + rgb[..., 1]) / 2 - rgb[..., 2]
    spatial = (1, 2)
    colourfulness = (np.hypot(rg.std(spatial), yb.std(spatial)) + 0.3 * np.hypot(rg.mean(spatial), yb.mean(spatial)))
    laplacian = luma[:, 1:-1, :-2] + luma[:, 1:-1, 2:] + luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1] - 4 * luma[:, 1:-1, 1:-1]
    return {
        "brightness": luma.mean(spatial),
        "contrast": luma.std(spatial),
        "colourfulness": colourfulness,
        "sharpness": laplacian.var(spatial) if laplacian.size else np.zeros(len(pictures), np.float32),
    }


def from_size(width: int, height: int) -> dict[str, float]:
    """size: √(width·height) of the stored image, in pixels; aspect ratio: width / height."""
    return {"size": float(np.sqrt(width * height)), "aspect_ratio": width / height}
