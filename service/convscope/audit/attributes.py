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
    The three opponent channels come from one product and are centred in place, so each moment
    is one pass along contiguous rows without temporaries (numpy's ``std`` makes three), and the
    centred luma serves the Laplacian, which a constant shift does not change."""
    count, height, width = pictures.shape[:3]
    planes = np.ascontiguousarray(pictures.transpose(3, 0, 1, 2), dtype=np.float32).reshape(3, -1)
    opponent = (_OPPONENT.T @ planes).reshape(3, count, height * width)  # reduced along contiguous rows
    mean = opponent.mean(2)
    opponent -= mean[:, :, None]
    std = np.sqrt(np.einsum("cnp,cnp->cn", opponent, opponent) / np.float32(height * width))
    luma = opponent[0].reshape(count, height, width)
    laplacian = luma[:, 1:-1, :-2] + luma[:, 1:-1, 2:]
    laplacian += luma[:, :-2, 1:-1]
    laplacian += luma[:, 2:, 1:-1]
    laplacian -= 4 * luma[:, 1:-1, 1:-1]
    sharpness = laplacian.reshape(count, -1).var(1) / np.float32(255**2) if laplacian.size else np.zeros(count, np.float32)
    return {
        "brightness": mean[0] / np.float32(255),
        "contrast": std[0] / np.float32(255),
        "colourfulness": np.hypot(std[1], std[2]) + 0.3 * np.hypot(mean[1], mean[2]),
        "sharpness": sharpness,
    }


def from_size(width: int, height: int) -> dict[str, float]:
    """size: √(width·height) of the stored image, in pixels; aspect ratio: width / height."""
    return {"size": float(np.sqrt(width * height)), "aspect_ratio": width / height}
