"""Downscaled copies of the pictures a dataset job streams by, kept for the figures drawn from
its result (``render/dataset_figures.py``) while the images themselves are dropped."""

from __future__ import annotations

import numpy as np
from PIL import Image


def shrink(picture: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """The picture with its longer side at most ``side`` (bilinear), and the scale applied."""
    longest = max(picture.shape[:2])
    if longest <= side:
        return picture, 1.0
    scale = side / longest
    size = (max(1, round(picture.shape[1] * scale)), max(1, round(picture.shape[0] * scale)))
    return np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BILINEAR)), scale
